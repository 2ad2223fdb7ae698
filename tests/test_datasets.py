"""mlmi.datasets: the synthetic CKD-like IPD meta-analysis (METHOD.md §7, Table 4)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.datasets import (
    TABLE4,
    ckd_like,
    ckd_truth,
    missing_counts,
    missingness_table,
)
from mlmi.exceptions import InputError

FORMULA = "smoking ~ alcohol + comorbidities + (1 + alcohol | study)"
COLUMNS = ["study", "smoking", "alcohol", "comorbidities", "age", "sex"]
SIZES = [832, 533, 88, 1144, 551, 578, 116, 44, 73, 55, 27, 405, 224, 59, 45]
# Table 4 of the paper, typed in again here (not read from the module):
# study -> % missing (smoking, sex, age, alcohol, comorbidities); 100 = systematic
SPEC = {
    1: (1, 0, 0, 1, 0), 2: (0, 0, 0, 26, 0), 3: (0, 0, 0, 0, 0), 4: (0, 0, 0, 100, 0),
    5: (0, 0, 0, 100, 0), 6: (0, 0, 0, 100, 0), 7: (0, 0, 0, 100, 0),
    8: (39, 0, 0, 55, 0), 9: (0, 0, 0, 5, 0), 10: (0, 0, 0, 100, 0),
    11: (0, 0, 0, 100, 0), 12: (0, 0, 0, 100, 0), 13: (0, 0, 0, 0, 0),
    14: (0, 0, 0, 100, 100), 15: (0, 0, 0, 100, 0),
}
SPEC_VARS = ["smoking", "sex", "age", "alcohol", "comorbidities"]
SEEDS = [2025, 0, 1, 7, 123456]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return ckd_like()


# ----------------------------------------------------------------- Table 4 pattern
def test_table4_constant_matches_the_paper():
    assert list(TABLE4.index) == list(range(1, 16))
    assert TABLE4.index.name == "study"
    assert list(TABLE4["n"]) == SIZES
    assert TABLE4["n"].sum() == 4774
    for study, pct in SPEC.items():
        assert tuple(TABLE4.loc[study, SPEC_VARS]) == pct, study


@pytest.mark.parametrize("seed", SEEDS)
def test_sizes_and_missing_pattern_exactly_table4(seed):
    d = ckd_like(seed)
    assert list(d.columns) == COLUMNS
    assert len(d) == 4774
    assert list(d.groupby("study").size()) == SIZES
    pd.testing.assert_frame_equal(missingness_table(d), TABLE4[["n", *SPEC_VARS]])
    # the counts themselves are fixed, not random
    counts = d.drop(columns="study").isna().groupby(d["study"]).sum()
    pd.testing.assert_frame_equal(counts.astype("int64"), missing_counts()[counts.columns])


def test_missing_counts_reproduce_rounded_percentages():
    counts = missing_counts()
    n = TABLE4["n"]
    for v in SPEC_VARS:
        pct = (100 * counts[v] / n).round().astype("int64")
        assert list(pct) == list(TABLE4[v]), v
    assert counts.loc[1, "smoking"] == 8 and counts.loc[8, "smoking"] == 17
    assert list(counts.loc[[1, 2, 8, 9], "alcohol"]) == [8, 139, 24, 4]


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_systematic_exactly_where_marked(seed):
    d = ckd_like(seed)
    for v in SPEC_VARS:
        for study, rows in d.groupby("study"):
            systematic = SPEC[study][SPEC_VARS.index(v)] == 100
            all_missing = bool(rows[v].isna().all())
            assert all_missing == systematic, (v, study)
    assert not d[["age", "sex"]].isna().any().any()
    # systematically missing alcohol: studies 4, 5, 6, 7, 10, 11, 12, 14, 15
    sys_alcohol = d.groupby("study")["alcohol"].apply(lambda s: s.isna().all())
    assert list(sys_alcohol[sys_alcohol].index) == [4, 5, 6, 7, 10, 11, 12, 14, 15]


# ------------------------------------------------------------ values, determinism
def test_dtypes_and_ranges(data):
    assert data["study"].dtype == np.int64
    for v in ("smoking", "alcohol", "comorbidities", "age", "sex"):
        assert data[v].dtype == np.float64, v
    for v in ("smoking", "alcohol", "sex"):
        assert set(data[v].dropna().unique()) == {0.0, 1.0}, v
    com = data["comorbidities"].dropna()
    assert set(com.unique()) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert data["age"].between(25, 95).all()
    assert 55 < data["age"].mean() < 75
    assert sorted(data["study"].unique()) == list(range(1, 16))
    assert isinstance(data.index, pd.RangeIndex)


def test_same_seed_same_data_other_seed_other_data():
    pd.testing.assert_frame_equal(ckd_like(11), ckd_like(11))
    pd.testing.assert_frame_equal(ckd_like(11, complete=True), ckd_like(11, complete=True))
    assert not ckd_like(11).equals(ckd_like(12))
    pd.testing.assert_frame_equal(ckd_like(), ckd_like(2025))


def test_complete_is_the_data_before_amputation(data):
    full = ckd_like(2025, complete=True)
    assert list(full.columns) == COLUMNS
    assert not full.isna().any().any()
    assert list(full.dtypes) == list(data.dtypes)
    observed = data.notna()
    for v in COLUMNS:
        np.testing.assert_array_equal(full.loc[observed[v], v], data.loc[observed[v], v])


def test_bad_seed():
    with pytest.raises(InputError, match="seed"):
        ckd_like("1")
    with pytest.raises(InputError, match="seed"):
        ckd_like(1.5)


def test_truth():
    assert ckd_truth() == {"a0": -1.32, "a1": 0.68, "a2": -0.012,
                           "omega0": 1.14, "omega1": 0.62}


# --------------------------------------------------------- the model and mechanism
def test_age_and_sex_are_informative_auxiliaries():
    full = pd.concat([ckd_like(s, complete=True) for s in range(5)], ignore_index=True)
    # older patients drink less and have more comorbidities; men drink more
    assert full["age"].corr(full["alcohol"]) < -0.05
    assert full["age"].corr(full["comorbidities"]) > 0.1
    by_sex = full.groupby("sex")["alcohol"].mean()
    assert by_sex[1.0] - by_sex[0.0] > 0.1


def test_smoking_independent_of_age_and_sex_given_covariates():
    full = ckd_like(2025, complete=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmi.fit_glmm("smoking ~ alcohol + comorbidities + age + sex"
                            " + (1 + alcohol | study)", full, "binomial")
    z = fit.fixef / np.sqrt(np.diag(fit.vcov))
    assert abs(z["age"]) < 3 and abs(z["sex"]) < 3


def test_sporadic_missingness_is_mar_on_age_and_sex():
    """Across seeds, alcohol is missing more often for older patients and men in
    study 2 (26 % missing), and smoking more often for younger patients in study 8."""
    age_gap, male_gap, smoke_gap = [], [], []
    for seed in range(30):
        d = ckd_like(seed)
        s2 = d[d["study"] == 2]
        miss = s2["alcohol"].isna()
        age_gap.append(s2.loc[miss, "age"].mean() - s2.loc[~miss, "age"].mean())
        male_gap.append(s2.loc[miss, "sex"].mean() - s2.loc[~miss, "sex"].mean())
        s8 = d[d["study"] == 8]
        miss8 = s8["smoking"].isna()
        smoke_gap.append(s8.loc[miss8, "age"].mean() - s8.loc[~miss8, "age"].mean())
    assert min(age_gap) > 0 and np.mean(age_gap) > 4
    assert np.mean(male_gap) > 0.05
    assert np.mean(smoke_gap) < -3


def test_missingness_table_of_complete_data_is_zero():
    table = missingness_table(ckd_like(3, complete=True))
    assert list(table["n"]) == SIZES
    assert (table[SPEC_VARS] == 0).all().all()


def test_analysis_model_fits_complete_data_near_truth():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmi.fit_glmm(FORMULA, ckd_like(2025, complete=True), "binomial")
    assert fit.converged
    truth = ckd_truth()
    se = np.sqrt(np.diag(fit.vcov))
    for j, name in enumerate(("a0", "a1", "a2")):
        assert abs(fit.beta[j] - truth[name]) < 3 * se[j], name


@pytest.mark.filterwarnings("ignore::mlmi.exceptions.ImputationWarning")
def test_impute_runs_on_ckd_like(data):
    before = data.copy(deep=True)
    imp = mlmi.impute(data, "study", m=2, maxit=2,
                      random={"alcohol": ["smoking"], "comorbidities": ["smoking"]}, seed=1)
    pd.testing.assert_frame_equal(data, before)
    for i in (1, 2):
        done = imp.complete(i)
        assert not done.isna().any().any()
        assert set(done["alcohol"].unique()) <= {0.0, 1.0}
        assert set(done["smoking"].unique()) <= {0.0, 1.0}
        observed = data["alcohol"].notna()
        np.testing.assert_array_equal(done.loc[observed, "alcohol"],
                                      data.loc[observed, "alcohol"])


@pytest.mark.slow
def test_analysis_model_recovers_truth_over_seeds():
    """Complete data, 100 seeds: the ML fit of the (correct) analysis model is close
    to the truth on average. The SDs are estimated from 15 studies: ML shrinks them a
    little (about 1.08 and 0.57 on average for 1.14 and 0.62)."""
    est = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(100):
            fit = mlmi.fit_glmm(FORMULA, ckd_like(seed, complete=True), "binomial")
            est.append([*fit.beta, *np.sqrt(np.diag(fit.psi))])
    mean = np.mean(est, axis=0)
    truth = np.array(list(ckd_truth().values()))
    tolerance = np.array([0.12, 0.08, 0.015, 0.15, 0.12])  # a0, a1, a2, omega0, omega1
    assert np.all(np.abs(mean - truth) < tolerance), (mean, truth)
