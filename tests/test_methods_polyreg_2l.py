"""``2l.polyreg`` through a Problem: recovery of the baseline-category logit model, the
random-slopes rule, empty categories and separation, bad input, reproducibility.

Statistical checks use fixed seeds; each tolerance is stated next to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmi.exceptions import InputError
from mlmi.methods import get_method
from test_methods_multilevel import make_problem, repeat

# ------------------------------------------------------------------------ 2l.polyreg
#: intercept and slope of categories "b" and "c" against "a"
POLY_BETA = np.array([[0.5, 0.8], [-0.3, -0.5]])
POLY_PSI = np.array([[0.5, 0.2], [0.2, 0.5]])


@pytest.fixture(scope="module")
def nominal_data():
    """3 categories, baseline-category logit with correlated category-specific random
    intercepts (Psi above); 10 studies of 200, 30 % MCAR, study 10 systematic."""
    from scipy.special import softmax

    rng = np.random.default_rng(71)
    cluster = np.repeat(np.arange(10), 200)
    x = rng.standard_normal(cluster.size)
    b = rng.multivariate_normal([0, 0], POLY_PSI, size=10)
    eta = np.column_stack([np.zeros(x.size)] + [
        POLY_BETA[k, 0] + POLY_BETA[k, 1] * x + b[cluster, k] for k in range(2)])
    prob = softmax(eta, axis=1)
    y = (rng.random(x.size)[:, None] > np.cumsum(prob, axis=1)[:, :-1]).sum(1).astype(float)
    ry = rng.random(x.size) > 0.3
    ry[cluster == 9] = False
    return y, x, cluster, ry, prob


def test_2l_polyreg_recovers_the_model(nominal_data):
    """The fit's category-specific intercepts and slopes are within 4 SE of the truth;
    every imputation is a category code; the studies are classified."""
    y, x, cluster, ry, _ = nominal_data
    p = make_problem(y, x, cluster, ry, "nominal", n_levels=3, levels=list("abc"),
                     sampler="marginal")
    d = get_method("2l.polyreg").func(p)
    fit = p.state["fit"]
    assert fit.x_names == ["b:(Intercept)", "b:x1", "c:(Intercept)", "c:x1"]
    se = np.sqrt(np.diag(fit.beta_cov))
    assert np.all(np.abs(fit.beta - POLY_BETA.ravel()) < 4 * se)
    assert fit.psi.shape == (2, 2)
    assert set(np.unique(d.values)) <= {0.0, 1.0, 2.0}
    assert d.info["n_sporadic"] == 9 and d.info["n_systematic"] == 1
    assert d.info["slopes_dropped"] == 0 and d.info["empty_categories"] == 0


def test_2l_polyreg_imputed_shares_follow_x(nominal_data):
    """Over 20 imputations the imputed share of each category among the missing rows
    with x < 0 and with x >= 0 is the true model's (mean of the true probabilities over
    those rows) within 0.05 — the random effects of the sporadic studies are prior draws
    under sampler="marginal", which adds between-study spread of about
    sqrt(Psi_kk / 9) × p(1-p) ~ 0.05 to a share; the tolerance is that, plus 4 SE of the
    MC error (< 0.01)."""
    y, x, cluster, ry, prob = nominal_data
    p = make_problem(y, x, cluster, ry, "nominal", n_levels=3, sampler="marginal")
    values, _ = repeat(p, "2l.polyreg", 20, 5)
    miss = np.flatnonzero(~ry & (cluster < 9))
    sel = (cluster[~ry] < 9)
    for side in (x[miss] < 0, x[miss] >= 0):
        got = np.array([(values[:, sel][:, side] == c).mean() for c in range(3)])
        true = prob[miss[side]].mean(axis=0)
        assert np.all(np.abs(got - true) < 0.06), (got, true)


def test_2l_polyreg_random_slopes_dropped_with_few_studies(nominal_data):
    """A random slope asked for 2 categories × (1 + 1) = 4 random effects: kept with 9
    observing studies (>= 4 + 2), dropped (and said) with 5."""
    y, x, cluster, ry, _ = nominal_data
    p = make_problem(y, x, cluster, ry, "nominal", n_levels=3, sampler="marginal",
                     types=[2])
    d = get_method("2l.polyreg").func(p)
    assert d.info["slopes_dropped"] == 0 and p.state["fit"].psi.shape == (4, 4)
    keep = cluster < 5
    few = make_problem(y[keep], x[keep], cluster[keep], ry[keep], "nominal", n_levels=3,
                       sampler="marginal", types=[2])
    d = get_method("2l.polyreg").func(few)
    assert d.info["slopes_dropped"] == 1 and few.state["fit"].psi.shape == (2, 2)
    assert any("random-slopes" in w and "'x1'" in w for w in d.info["fit_warnings"])


def test_2l_polyreg_empty_category_and_separation_do_not_crash(nominal_data):
    """Category "c" unobserved (never imputed, counted); a category "b" that occurs only
    where x > 1.2 (quasi-separated by x: its slope runs off) is fitted with the separation
    counted and the imputation goes on."""
    y, x, cluster, ry, _ = nominal_data
    y2 = np.where(y == 2, 0.0, y)
    y2[ry & (cluster == 0)][:1] = 0.0
    d = get_method("2l.polyreg").func(make_problem(y2, x, cluster, ry, "nominal",
                                                   n_levels=3, sampler="marginal"))
    assert d.info["empty_categories"] == 1 and 2.0 not in set(d.values)
    y3 = np.where(x > 1.2, 1.0, np.where(y == 1, 2.0, y))
    d = get_method("2l.polyreg").func(make_problem(y3, x, cluster, ry, "nominal",
                                                   n_levels=3, sampler="marginal"))
    assert set(np.unique(d.values)) <= {0.0, 1.0, 2.0}
    assert d.info.get("separation", 0) >= 1
    assert any("separation" in w for w in d.info["fit_warnings"])


def test_2l_polyreg_bad_input_and_reproducible(nominal_data):
    y, x, cluster, ry, _ = nominal_data
    p = make_problem(np.where(ry, 2.0, np.nan), x, cluster, ry, "nominal", n_levels=3,
                     levels=["a", "b", "c"])
    with pytest.raises(InputError, match=r"'z' \(nominal\).*only one category \('c'\)"):
        get_method("2l.polyreg").func(p)
    a = get_method("2l.polyreg").func(make_problem(y, x, cluster, ry, "nominal", n_levels=3,
                                                   sampler="marginal", seed=4)).values
    b = get_method("2l.polyreg").func(make_problem(y, x, cluster, ry, "nominal", n_levels=3,
                                                   sampler="marginal", seed=4)).values
    np.testing.assert_array_equal(a, b)


def test_2l_polyreg_reproduces_category_shares_per_study(nominal_data):
    """With the exact posterior sampler, over 30 imputations each sporadically missing
    study's mean imputed share of each category is its true expected share among its
    missing rows (mean of the true probabilities) within 4 SE, SE² = p(1-p)/n_obs,i (the
    study's level is learnt from its observed rows; partial pooling only shrinks it)
    + p(1-p)/(30 n_mis,i) (Monte Carlo), over 27 study-category cells."""
    y, x, cluster, ry, prob = nominal_data
    p = make_problem(y, x, cluster, ry, "nominal", n_levels=3, levels=list("abc"))
    values, infos = repeat(p, "2l.polyreg", 30, 6)
    miss = np.flatnonzero(~ry)
    for i in range(9):
        rows = cluster[miss] == i
        n_obs = int(np.sum(ry & (cluster == i)))
        true = prob[miss[rows]].mean(axis=0)
        got = np.array([(values[:, rows] == c).mean() for c in range(3)])
        se = np.sqrt(true * (1 - true) / n_obs + true * (1 - true) / values[:, rows].size)
        assert np.all(np.abs(got - true) < 4 * se), (i, got, true)
    assert sum(info["fallbacks"] for info in infos) == 0
    assert all(info["accepted"] == 9 for info in infos)


def test_2l_polyreg_fewer_studies_than_random_effects_uses_ml_normal():
    """4 categories (3 random intercepts) observed in 2 studies: the Wishart draw of Psi*
    does not exist, Psi* is drawn by ml-normal, counted and said."""
    from scipy.special import softmax

    rng = np.random.default_rng(3)
    cluster = np.repeat(np.arange(4), 150)
    x = rng.standard_normal(cluster.size)
    eta = np.column_stack([np.zeros(x.size), 0.3 + 0.5 * x, -0.2 + 0 * x, 0.1 - 0.4 * x])
    y = (rng.random(x.size)[:, None] > np.cumsum(softmax(eta, 1), 1)[:, :-1]).sum(1)
    ry = rng.random(x.size) > 0.3
    ry[cluster >= 2] = False
    d = get_method("2l.polyreg").func(make_problem(y.astype(float), x, cluster, ry,
                                                   "nominal", n_levels=4))
    assert d.info["psi_fallbacks"] == 1
    assert any("2 observing stud(ies) for 3 random effects" in w
               for w in d.info["fit_warnings"])
    assert d.info["n_systematic"] == 2 and set(np.unique(d.values)) <= {0, 1, 2, 3}
