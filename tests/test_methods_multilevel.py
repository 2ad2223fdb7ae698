"""The multilevel methods of issue 11 — ``2l.polr``, ``2l.nb`` (and, with limits, the
truncated draws of ``2l.norm``, ``2l.pois``, ``norm``) — through a Problem, as the driver
calls them: recovery on data simulated with known truth, bad input, reproducibility.

Statistical checks use fixed seeds; each tolerance is stated next to it in Monte Carlo
standard errors (SE).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

import helpers
from mlmi.exceptions import InputError
from mlmi.methods import Problem, get_method


def make_problem(y, x, cluster, ry, vtype, *, n_levels=0, levels=None, seed=0,
                 limits=None, sampler="exact", types=None, psi_draw="paper") -> Problem:
    return helpers.make_problem(y, x, cluster, ry, vtype, seed=seed, types=types,
                                n_levels=n_levels, levels=levels, limits=limits,
                                sampler=sampler, psi_draw=psi_draw)


def repeat(problem: Problem, method: str, times: int, seed: int):
    """``times`` imputation steps of one method on the same data (as successive MICE
    iterations with nothing else changing): stacked values and the infos."""
    func = get_method(method).func
    values, infos = [], []
    for t in range(times):
        problem.rng = np.random.default_rng([seed, t])
        d = func(problem)
        values.append(d.values)
        infos.append(d.info)
    return np.array(values), infos


# ------------------------------------------------------------------------ 2l.polr
THRESHOLDS = np.array([-1.0, 0.3, 1.5])
K_STUDIES, N_PER = 10, 200


@pytest.fixture(scope="module")
def ordinal_data():
    """4 ordered categories, cumulative logit with beta = 0.8 for x, random intercepts
    SD 0.8; 10 studies of 200, 30 % MCAR missing, study 10 systematically missing."""
    rng = np.random.default_rng(11)
    cluster = np.repeat(np.arange(K_STUDIES), N_PER)
    x = rng.standard_normal(cluster.size)
    b = 0.8 * rng.standard_normal(K_STUDIES)
    eta = 0.8 * x + b[cluster]
    cum = expit(THRESHOLDS[None, :] - eta[:, None])
    prob = np.diff(np.hstack([np.zeros((eta.size, 1)), cum, np.ones((eta.size, 1))]), axis=1)
    y = (rng.random(eta.size)[:, None] > cum).sum(axis=1).astype(float)
    ry = rng.random(y.size) > 0.3
    ry[cluster == K_STUDIES - 1] = False
    return y, x, cluster, ry, prob


def test_2l_polr_reproduces_category_shares_per_study(ordinal_data):
    """Over 40 imputations, each sporadically missing study's mean imputed share of each
    category is its true expected share among the missing rows (sum of the true model
    probabilities / n_mis). The imputation model learns study i's level from its
    n_obs,i ~ 140 observed rows, so the mean imputed share differs from the truth by
    about sqrt(p (1 - p) / n_obs,i) (estimation error, partly pooled: at most this) plus
    the Monte Carlo error of 40 × n_mis draws; tolerance 4 × their root sum of squares,
    over 36 study-category cells."""
    y, x, cluster, ry, prob = ordinal_data
    p = make_problem(y, x, cluster, ry, "ordinal", n_levels=4, levels=list("abcd"))
    values, infos = repeat(p, "2l.polr", 40, 1)
    assert set(np.unique(values)) <= {0.0, 1.0, 2.0, 3.0}
    miss = np.flatnonzero(~ry)
    for i in range(K_STUDIES - 1):
        rows = cluster[miss] == i
        n_obs = int(np.sum(ry & (cluster == i)))
        true = prob[miss[rows]].mean(axis=0)
        got = np.array([(values[:, rows] == c).mean() for c in range(4)])
        se = np.sqrt(true * (1 - true) / n_obs + true * (1 - true) / values[:, rows].size)
        assert np.all(np.abs(got - true) < 4 * se), (i, got, true)
    assert all(info["n_sporadic"] == 9 and info["n_systematic"] == 1 for info in infos)
    assert sum(info["fallbacks"] for info in infos) == 0
    assert all(info["empty_categories"] == 0 for info in infos)


def test_2l_polr_thresholds_drawn_ordered_around_the_fit(ordinal_data):
    """theta* stays ordered in every draw and is centred at the fit's thresholds: the mean
    of 300 draws of alpha* (the optimiser's scale) is within 4 MC SE of alpha-hat, with the
    SE from the fit's joint covariance."""
    from mlmi.methods._multilevel import beta_star_stage, fit_stage

    y, x, cluster, ry, _ = ordinal_data
    p = make_problem(y, x, cluster, ry, "ordinal", n_levels=4)
    step = fit_stage(p, "ordinal")
    fit = step.fit
    assert "(Intercept)" not in fit.x_names  # the thresholds take its place
    np.testing.assert_allclose(fit.family_params.to_numpy(), THRESHOLDS, atol=0.5)
    draws = []
    for _ in range(300):
        beta_star_stage(step)
        draws.append(step.extra_star)
        theta = fit.family.extra_natural(step.extra_star)
        assert np.all(np.diff(theta) > 0)
        assert step.beta_star[0] == 0.0  # no intercept
    draws = np.array(draws)
    se = np.sqrt(np.diag(fit.joint_cov)[fit.beta.size:] / 300)
    assert np.all(np.abs(draws.mean(axis=0) - fit.extra) < 4 * se)


def test_2l_polr_empty_category_and_small_sporadic_study(ordinal_data):
    """A category no observed row takes is never imputed and is counted; a sporadically
    missing study with three observed values, all in one category, still gets its
    posterior draw (the sampler does not ask its rows to show every category)."""
    y, x, cluster, ry, _ = ordinal_data
    y = y.copy()
    y[y == 2] = 3  # category code 2 ("c") is now empty
    ry = np.ones(y.size, dtype=bool)
    first = np.flatnonzero(cluster == 0)
    y[first[:3]] = 1.0
    ry[first[3:]] = False
    p = make_problem(y, x, cluster, ry, "ordinal", n_levels=4, levels=list("abcd"))
    d = get_method("2l.polr").func(p)
    assert d.info["empty_categories"] == 1
    assert any("empty-category" in w and "'c'" in w for w in d.info["fit_warnings"])
    assert 2.0 not in set(d.values) and set(d.values) <= {0.0, 1.0, 3.0}
    assert d.info["n_sporadic"] == 1 and d.info["accepted"] == 1


def test_2l_polr_bad_input(ordinal_data):
    y, x, cluster, ry, _ = ordinal_data
    p = make_problem(np.where(ry, 1.0, np.nan), x, cluster, ry, "ordinal", n_levels=4,
                     levels=list("abcd"))
    with pytest.raises(InputError, match=r"'z'.*only one category \('b'\)"):
        get_method("2l.polr").func(p)
    p = make_problem(y + 0.5, x, cluster, ry, "ordinal", n_levels=4)
    with pytest.raises(InputError, match=r"'z'.*category codes 0..n_levels-1"):
        get_method("2l.polr").func(p)
    p = make_problem(y, x, cluster, ry, "ordinal", n_levels=4, limits=(0, 2))
    with pytest.raises(InputError, match=r"'z'.*limits=\(0, 2\).*ordinal"):
        get_method("2l.polr").func(p)


def test_2l_polr_reproducible(ordinal_data):
    y, x, cluster, ry, _ = ordinal_data
    a = get_method("2l.polr").func(make_problem(y, x, cluster, ry, "ordinal", n_levels=4,
                                                seed=3)).values
    b = get_method("2l.polr").func(make_problem(y, x, cluster, ry, "ordinal", n_levels=4,
                                                seed=3)).values
    c = get_method("2l.polr").func(make_problem(y, x, cluster, ry, "ordinal", n_levels=4,
                                                seed=4)).values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------------------ 2l.nb
@pytest.fixture(scope="module")
def nb_data():
    """NB2 counts, log mu = 0.5 + 0.4 x + b_i (SD 0.5), theta = 2; 10 studies of 200,
    30 % MCAR missing, study 10 systematic."""
    rng = np.random.default_rng(21)
    cluster = np.repeat(np.arange(10), 200)
    x = rng.standard_normal(cluster.size)
    b = 0.5 * rng.standard_normal(10)
    mu = np.exp(0.5 + 0.4 * x + b[cluster])
    y = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(float)
    ry = rng.random(y.size) > 0.3
    ry[cluster == 9] = False
    return y, x, cluster, ry, mu


def test_2l_nb_recovers_the_overdispersion(nb_data):
    """The fit's theta is within 4 SE of 2 (SE from the fit), and over 40 imputations of
    the sporadically missing rows the imputed values' mean and variance are the true
    model's (mean of mu; variance mean(mu + mu²/theta) + var(mu)). Tolerances: the mean
    within 6 % — each study's level is learnt from ~140 observed rows, an error of about
    sqrt(var / (mean² n_obs)) ~ 12 % per study, ~4 % averaged over 9 studies, plus the
    Monte Carlo error of 40 × 420 draws (< 1 %); the variance within 15 % — theta's own
    estimation error (SE(log theta) ~ 0.1) moves the NB part by ~10 %. Poisson
    imputations of the same rows miss the variance by far more (below 0.75 × the
    truth)."""
    y, x, cluster, ry, mu = nb_data
    p = make_problem(y, x, cluster, ry, "count")
    values, infos = repeat(p, "2l.nb", 40, 2)
    fit = p.state["fit"]
    se_log_theta = np.sqrt(fit.joint_cov[-1, -1])
    assert abs(np.log(fit.nb_theta) - np.log(2.0)) < 4 * se_log_theta
    rows = (~ry) & (cluster < 9)
    imp = values[:, rows[~ry]]
    m = mu[rows]
    true_mean = m.mean()
    true_var = np.mean(m + m**2 / 2.0) + m.var()
    assert abs(imp.mean() - true_mean) < 0.06 * true_mean
    assert abs(imp.var() / true_var - 1) < 0.15
    pois, _ = repeat(make_problem(y, x, cluster, ry, "count"), "2l.pois", 40, 2)
    assert pois[:, rows[~ry]].var() < 0.75 * true_var
    assert all(i["extra_held"] == 0 and i["fallbacks"] == 0 for i in infos)


def test_2l_nb_without_overdispersion_says_poisson_suffices(nb_data):
    _, x, cluster, ry, mu = nb_data
    y = np.random.default_rng(5).poisson(mu).astype(float)
    d = get_method("2l.nb").func(make_problem(y, x, cluster, ry, "count"))
    assert d.info["family_boundary"] == 1 and d.info["extra_held"] == 1
    assert any("Poisson family suffices" in w for w in d.info["fit_warnings"])
    assert np.all(d.values >= 0) and np.all(d.values == np.round(d.values))


def test_2l_nb_reproducible(nb_data):
    y, x, cluster, ry, _ = nb_data
    a = get_method("2l.nb").func(make_problem(y, x, cluster, ry, "count", seed=8)).values
    b = get_method("2l.nb").func(make_problem(y, x, cluster, ry, "count", seed=8)).values
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ limits
@pytest.mark.parametrize("method,limits", [("2l.nb", (0, 4)), ("2l.pois", (1, 6))])
def test_count_methods_draw_within_limits(nb_data, method, limits):
    """Every imputed count lies in [lo, hi]; ``truncated`` is the summed untruncated
    probability outside the range, which for these data is large (counts reach 30)."""
    y, x, cluster, ry, _ = nb_data
    d = get_method(method).func(make_problem(y, x, cluster, ry, "count", limits=limits))
    assert d.values.min() >= limits[0] and d.values.max() <= limits[1]
    assert np.all(d.values == np.round(d.values))
    assert d.info["truncated"] > 10 and d.info["truncated_rows"] >= 1
    # untruncated: values outside the range occur, and the key is absent
    free = get_method(method).func(make_problem(y, x, cluster, ry, "count"))
    assert free.values.max() > limits[1] and "truncated" not in free.info


def test_normal_methods_draw_within_limits():
    """2l.norm and the single-level norm with limits (0, inf) on a variable whose model
    puts ~ 25 % of the missing rows' mass below 0: all imputations positive, about that
    share reported as ``truncated``, while the untruncated methods do go below 0."""
    rng = np.random.default_rng(31)
    cluster = np.repeat(np.arange(8), 150)
    x = rng.standard_normal(cluster.size)
    y = 0.7 + x + 0.5 * rng.standard_normal(8)[cluster] + rng.standard_normal(cluster.size)
    ry = rng.random(y.size) > 0.3
    ry[cluster == 7] = False
    for method, role in (("2l.norm", -2), ("norm", 1)):
        p = make_problem(y, x, cluster, ry, "continuous", limits=(0.0, np.inf))
        p.cluster_role = role
        values, infos = repeat(p, method, 10, 4)
        assert values.min() >= 0.0
        frac = np.mean([i["truncated"] for i in infos]) / values.shape[1]
        assert 0.1 < frac < 0.45
        p0 = make_problem(y, x, cluster, ry, "continuous")
        p0.cluster_role = role
        free, _ = repeat(p0, method, 3, 4)
        assert free.min() < 0  # the untruncated model does go below 0


def test_response_stage_draws_the_truncated_model():
    """With the fit, beta*, Psi*, sigma* and b* of one 2l.norm step fixed, 400 response
    draws per missing row average to the closed-form truncated-normal mean at that row's
    (eta, sigma*): mean over rows of the standardised differences within 4 SE."""
    from scipy.stats import truncnorm

    from mlmi.methods._multilevel import (
        b_star_stage,
        beta_star_stage,
        fit_stage,
        psi_sigma_stage,
        response_stage,
    )

    rng = np.random.default_rng(32)
    cluster = np.repeat(np.arange(6), 100)
    x = rng.standard_normal(cluster.size)
    y = 0.5 + x + 0.5 * rng.standard_normal(6)[cluster] + rng.standard_normal(cluster.size)
    ry = rng.random(y.size) > 0.3
    p = make_problem(y, x, cluster, ry, "continuous", limits=(0.0, 2.0))
    step = fit_stage(p, "gaussian")
    beta_star_stage(step)
    psi_sigma_stage(step)
    b_star_stage(step)
    eta = step.linear_predictor(step.miss, step.beta_star, step.b_star)
    s = step.sigma_star
    draws = np.array([response_stage(step) for _ in range(400)])
    assert draws.min() >= 0.0 and draws.max() <= 2.0
    t = truncnorm((0.0 - eta) / s, (2.0 - eta) / s, loc=eta, scale=s)
    z = (draws.mean(axis=0) - t.mean()) / np.sqrt(t.var() / 400)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 0.15  # unit variance of the standardised means
    from scipy.stats import norm

    mass = norm.cdf(0.0, eta, s) + norm.sf(2.0, eta, s)
    assert step.counts["truncated"] == pytest.approx(mass.sum(), rel=1e-12)


def test_limits_do_not_apply_to_binary(nb_data):
    y, x, cluster, ry, _ = nb_data
    p = make_problem((y > 1).astype(float), x, cluster, ry, "binary", limits=(0, 1))
    with pytest.raises(InputError, match="binomial family"):
        get_method("2l.bin").func(p)


# ------------------------------------------------------------------------ 2l.pmm
def test_2l_pmm_recovers_study_means_under_mar():
    """Linear mixed-model data (the model 2l.pmm matches on is right), missingness MAR on
    x: over 30 imputations each study's mean imputed value is the true conditional mean
    of its missing rows, 1 + 0.5 x + b_i, within 4 SE, SE = sqrt(1/n_obs,i + 1/n_mis,i)
    (the residual SD is 1: the study's level is learnt from its n_obs,i observed rows, and
    the donors' own residuals average over the n_mis,i rows)."""
    rng = np.random.default_rng(51)
    cluster = np.repeat(np.arange(10), 150)
    x = rng.standard_normal(cluster.size)
    mean = 1 + 0.5 * x + 0.8 * rng.standard_normal(10)[cluster]
    z = mean + rng.standard_normal(cluster.size)
    ry = rng.random(cluster.size) > expit(-1 + 0.5 * x)
    values, infos = repeat(make_problem(z, x, cluster, ry, "continuous"), "2l.pmm", 30, 1)
    assert np.all(np.isin(values, z[ry]))
    miss = ~ry
    for i in range(10):
        rows = cluster[miss] == i
        se = np.sqrt(1 / np.sum(ry & (cluster == i)) + 1 / rows.sum())
        assert abs(values[:, rows].mean() - mean[miss][rows].mean()) < 4 * se
    assert all(info["pmm_across"] == 0 and info["pmm_within_studies"] == 10
               for info in infos)


@pytest.fixture(scope="module")
def skewed_data():
    """A log-normal (BNP-like) variable: 10 studies of 150, one of 8 (sporadic, 2-3
    observed values), one of 100 systematically missing; MAR on x."""
    rng = np.random.default_rng(41)
    sizes = np.r_[np.full(10, 150), 8, 100]
    cluster = np.repeat(np.arange(12), sizes)
    x = rng.standard_normal(cluster.size)
    z = np.exp(1 + 0.5 * x + 0.6 * rng.standard_normal(12)[cluster]
               + 0.5 * rng.standard_normal(cluster.size))
    ry = rng.random(cluster.size) > expit(-1 + 0.5 * x)
    ry[cluster == 11] = False
    return z, x, cluster, ry


def test_2l_pmm_keeps_a_skewed_variable_positive(skewed_data):
    """Imputations are observed values (so positive), where 2l.norm's normal draws go
    below 0 for more than 10 % of the rows; the imputed mean is closer to the true mean of
    the missing values than the observed mean is (MAR: the observed rows are biased low),
    by at least half of the complete-case bias. Donors: within the 10 large studies,
    across studies for the small one (< 10 observed values) and the systematic one."""
    z, x, cluster, ry = skewed_data
    values, infos = repeat(make_problem(z, x, cluster, ry, "continuous"), "2l.pmm", 20, 1)
    assert np.all(np.isin(values, z[ry])) and values.min() > 0
    truth = z[~ry].mean()
    assert abs(values.mean() - truth) < 0.5 * abs(z[ry].mean() - truth)
    n_small = int(np.sum(~ry & (cluster >= 10)))
    for info in infos:
        assert info["pmm_within_studies"] == 10 and info["pmm_across_studies"] == 2
        assert info["pmm_across"] == n_small
        assert info["n_systematic"] == 1 and info["n_sporadic"] == 11
    norm, _ = repeat(make_problem(z, x, cluster, ry, "continuous"), "2l.norm", 3, 1)
    assert np.mean(norm < 0) > 0.1


def test_2l_pmm_counts_and_reproducible(skewed_data):
    z, x, cluster, ry = skewed_data
    zc = np.round(z)  # a count variable: imputations are observed counts
    a = get_method("2l.pmm").func(make_problem(zc, x, cluster, ry, "count", seed=2))
    b = get_method("2l.pmm").func(make_problem(zc, x, cluster, ry, "count", seed=2))
    np.testing.assert_array_equal(a.values, b.values)
    assert np.all(np.isin(a.values, zc[ry]))


def test_2l_pmm_donors_use_the_drawn_random_effects():
    """Two studies with very different levels (0 and 10): a systematically missing row
    matched across studies takes its donor from the study its drawn b* points to, so
    the imputations of a new study spread over both levels, while a sporadic study's rows
    (within-study donors) stay at its own level."""
    rng = np.random.default_rng(61)
    cluster = np.repeat(np.arange(5), 60)
    level = np.array([0.0, 10.0, 0.0, 10.0, 5.0])
    z = level[cluster] + rng.standard_normal(cluster.size)
    x = rng.standard_normal(cluster.size)
    ry = np.ones(cluster.size, dtype=bool)
    ry[cluster == 4] = False
    ry[np.flatnonzero(cluster == 1)[:20]] = False
    values, _ = repeat(make_problem(z, x, cluster, ry, "continuous"), "2l.pmm", 30, 3)
    sporadic = (cluster[~ry] == 1)
    assert values[:, sporadic].min() > 5  # study 2's own level (10) only
    new = values[:, ~sporadic].mean(axis=1)  # one b* per imputation for the new study
    assert new.min() < 4 and new.max() > 6  # spread by the prior draw of b*


# ------------------------------------------------------------------------ the stages
def test_stages_compose_to_the_method(ordinal_data):
    """A method written as the five stages (as a new method file would) gives the
    registered method's numbers exactly, for the same seed."""
    from mlmi.methods._multilevel import (
        b_star_stage,
        beta_star_stage,
        fit_stage,
        psi_sigma_stage,
        response_stage,
    )

    y, x, cluster, ry, _ = ordinal_data
    p1 = make_problem(y, x, cluster, ry, "ordinal", n_levels=4, seed=12)
    p2 = make_problem(y, x, cluster, ry, "ordinal", n_levels=4, seed=12)
    want = get_method("2l.polr").func(p1)
    step = fit_stage(p2, "ordinal")
    beta_star_stage(step)
    psi_sigma_stage(step)
    b_star_stage(step)
    got = response_stage(step)
    np.testing.assert_array_equal(got, want.values)
    assert step.info() == want.info


def test_2l_nb_bad_counts_are_named(nb_data):
    y, x, cluster, ry, _ = nb_data
    bad = y.copy()
    bad[np.flatnonzero(ry)[0]] = 1.5
    with pytest.raises(InputError, match=r"non-integer value\(s\) \[1.5\]"):
        get_method("2l.nb").func(make_problem(bad, x, cluster, ry, "count"))
    bad[np.flatnonzero(ry)[0]] = -2.0
    with pytest.raises(InputError, match=r"non-negative count.*\[-2.0\]"):
        get_method("2l.nb").func(make_problem(bad, x, cluster, ry, "count"))
