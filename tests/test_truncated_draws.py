"""Truncated response draws (``Family.sample(..., limits=(lo, hi))``, issue 11 point 5)
against closed forms: the truncated normal's mean and variance, the truncated Poisson's
and NB2's pmf (the untruncated pmf renormalised over [lo, hi]).

Tolerances are Monte Carlo errors of the fixed-seed draws: a mean within 4 standard
errors (SE = SD / sqrt(n)), a variance within 4 SE of the sample variance
(SE ~ sigma² sqrt((kurtosis - 1) / n), bounded here by sigma² sqrt(2 / n) × 1.5 for the
light-tailed truncated normal), and every cell of a pmf within 4 SE
(sqrt(p (1 - p) / n)).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import log_ndtr

from mlmi.exceptions import InputError
from mlmi.glmm import get_family
from mlmi.glmm.families.gaussian import truncated_standard_normal

N = 200_000


def _truncnorm_moments(mu, sigma, lo, hi):
    """Closed form: alpha, beta standardised bounds, Z = Phi(beta) - Phi(alpha);
    mean = mu + sigma (phi(alpha) - phi(beta)) / Z,
    var = sigma² (1 + (alpha phi(alpha) - beta phi(beta)) / Z - ((phi(alpha) - phi(beta)) / Z)²)."""
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    pa, pb = stats.norm.pdf(a), stats.norm.pdf(b)
    Z = stats.norm.cdf(b) - stats.norm.cdf(a)
    apa = 0.0 if np.isinf(a) else a * pa
    bpb = 0.0 if np.isinf(b) else b * pb
    m = (pa - pb) / Z
    return mu + sigma * m, sigma**2 * (1 + (apa - bpb) / Z - m * m)


@pytest.mark.parametrize("mu,sigma,lo,hi", [
    (1.0, 2.0, 0.0, 3.0),        # both bounds inside the bulk
    (1.0, 1.0, 0.0, np.inf),     # lower bound only (a BNP-like positive variable)
    (-3.0, 1.0, 0.0, np.inf),    # bound 3 SD above the mean: the upper tail
    (2.0, 0.5, -np.inf, 1.0),    # upper bound only, in the lower tail
])
def test_truncated_normal_mean_and_variance(mu, sigma, lo, hi):
    g = get_family("gaussian")
    x = g.sample(np.full(N, mu), np.random.default_rng(1), sigma, limits=(lo, hi))
    assert x.min() >= lo and x.max() <= hi
    mean, var = _truncnorm_moments(mu, sigma, lo, hi)
    se_mean = np.sqrt(var / N)
    assert abs(x.mean() - mean) < 4 * se_mean
    assert abs(x.var() - var) < 4 * 1.5 * var * np.sqrt(2.0 / N)


def test_truncated_normal_far_tail_uses_the_exponential_approximation():
    """Bound 40 SD above the mean: Phi's mass underflows, the draw is lo + Exp(rate lo)
    approximately: mean excess over lo = 1/lo to O(1/lo³) (the Mills ratio), checked to
    4 MC SE."""
    z = truncated_standard_normal(np.full(N, 40.0), np.full(N, np.inf),
                                  np.random.default_rng(2).random(N))
    assert z.min() >= 40.0
    excess = z - 40.0
    mills = np.exp(stats.norm.logpdf(40.0) - log_ndtr(-40.0))  # E[Z | Z > 40]
    assert abs(excess.mean() - (mills - 40.0)) < 4 * excess.std() / np.sqrt(N)


def _check_pmf(x, pmf, lo):
    counts = np.bincount((x - lo).astype(int), minlength=pmf.size)
    assert counts.size == pmf.size  # nothing outside [lo, hi]
    p_hat = counts / x.size
    se = np.sqrt(pmf * (1 - pmf) / x.size)
    assert np.all(np.abs(p_hat - pmf) <= 4 * se + 1e-12)


@pytest.mark.parametrize("mu,lo,hi", [(3.0, 1, 4), (0.2, 0, 2), (3.0, 12, 16),
                                      (40.0, 0, 20)])
def test_truncated_poisson_pmf(mu, lo, hi):
    """Includes ranges in both tails: [12, 16] at mean 3 (mass 7e-5) and [0, 20] at 40."""
    x = get_family("poisson").sample(np.full(N, np.log(mu)), np.random.default_rng(3),
                                     limits=(lo, hi))
    k = np.arange(lo, hi + 1)
    logp = stats.poisson.logpmf(k, mu)
    pmf = np.exp(logp - np.logaddexp.reduce(logp))
    _check_pmf(x, pmf, lo)


def test_truncated_poisson_lower_bound_only():
    """[5, inf) at mean 1: the pmf renormalised by P(X >= 5), the first 15 cells."""
    mu, lo = 1.0, 5
    x = get_family("poisson").sample(np.full(N, np.log(mu)), np.random.default_rng(4),
                                     limits=(lo, np.inf))
    assert x.min() >= lo
    k = np.arange(lo, lo + 15)
    pmf = stats.poisson.pmf(k, mu) / stats.poisson.sf(lo - 1, mu)
    p_hat = np.array([np.mean(x == v) for v in k])
    assert np.all(np.abs(p_hat - pmf) <= 4 * np.sqrt(pmf * (1 - pmf) / N) + 1e-12)


@pytest.mark.parametrize("mu,theta,lo,hi", [(3.0, 1.5, 0, 5), (2.0, 0.5, 3, 9),
                                            (1.0, 4.0, 0, 1)])
def test_truncated_negbin_pmf(mu, theta, lo, hi):
    x = get_family("negbin").sample(np.full(N, np.log(mu)), np.random.default_rng(5),
                                    extra=np.array([np.log(theta)]), limits=(lo, hi))
    k = np.arange(lo, hi + 1)
    pmf = stats.nbinom.pmf(k, theta, theta / (theta + mu))
    _check_pmf(x, pmf / pmf.sum(), lo)


def test_outside_mass_closed_forms():
    eta = np.log(np.array([0.5, 3.0, 10.0]))
    got = get_family("poisson").outside_mass(eta, limits=(1, 4))
    want = 1 - (stats.poisson.cdf(4, np.exp(eta)) - stats.poisson.cdf(0, np.exp(eta)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = get_family("gaussian").outside_mass(np.array([0.0, 2.0]), 1.5, limits=(-1, 1))
    want = stats.norm.cdf(-1, [0, 2], 1.5) + stats.norm.sf(1, [0, 2], 1.5)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = get_family("negbin").outside_mass(np.log([2.0]), extra=np.log([0.7]), limits=(0, 3))
    np.testing.assert_allclose(got, stats.nbinom.sf(3, 0.7, 0.7 / 2.7), rtol=1e-10)


def test_limits_none_is_the_untruncated_draw():
    """limits=None takes exactly the numbers it took before (the golden masters rely on
    it): the same generator calls as numpy's own."""
    eta = np.linspace(-1, 2, 50)
    for name, ref in [("poisson", lambda r: r.poisson(np.exp(eta)).astype(float)),
                      ("gaussian", lambda r: eta + 1.3 * r.standard_normal(50))]:
        got = get_family(name).sample(eta, np.random.default_rng(9), 1.3, limits=None)
        np.testing.assert_array_equal(got, ref(np.random.default_rng(9)))


def test_bad_limits_are_named():
    g, p = get_family("gaussian"), get_family("poisson")
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=r"limits=\(3, 1\).*lower <= upper"):
        g.sample(np.zeros(3), rng, 1.0, limits=(3, 1))
    with pytest.raises(InputError, match="limits='ab'"):
        g.sample(np.zeros(3), rng, 1.0, limits="ab")
    with pytest.raises(InputError, match="no non-negative integer"):
        p.sample(np.zeros(3), rng, limits=(1.2, 1.8))
    with pytest.raises(InputError, match="binomial family has no range"):
        get_family("binomial").sample(np.zeros(3), rng, limits=(0, 1))


@pytest.mark.parametrize("method", ["2l.2stage.pois", "2l.2stage.norm"])
def test_two_stage_methods_draw_from_the_truncated_model(method):
    """The two-stage methods draw through the same truncated sampler as the multilevel
    ones: with limits every imputation is inside them (these data put several per cent
    of the model's mass outside) and the outside mass is counted; limits holding all the
    mass count none; without limits nothing is counted."""
    from mlmi.methods import get_method
    from mlmi.methods.base import SPORADIC, SYSTEMATIC, Problem

    rng = np.random.default_rng(5)
    k, n = 8, 60
    cluster = np.repeat(np.arange(k), n)
    x = rng.standard_normal((k * n, 1))
    mu = 1.0 + 0.6 * x[:, 0] + rng.normal(0, 0.4, k)[cluster]
    y = (rng.poisson(np.exp(mu)) if "pois" in method else mu + rng.standard_normal(k * n))
    y = y.astype(float)
    wy = rng.random(k * n) < 0.3
    wy[cluster == 7] = True  # a systematically missing study: its prior draw, too
    status = np.full(k, SPORADIC)
    status[7] = SYSTEMATIC
    lo, hi = (0.0, 3.0) if "pois" in method else (0.0, 2.0)

    def run(limits, seed):
        problem = Problem(
            variable="z", vtype="count" if "pois" in method else "continuous",
            y=np.where(wy, np.nan, y), ry=~wy, wy=wy, x=x, x_names=["x"],
            type=np.array([1]), cluster=cluster, cluster_labels=np.arange(k),
            status=status, rng=np.random.default_rng(seed), limits=limits)
        return get_method(method).func(problem)

    draw = run((lo, hi), 1)
    assert np.all((draw.values >= lo) & (draw.values <= hi))
    assert draw.info["truncated"] > 1.0  # the model puts mass outside [lo, hi]
    wide = run((-1e6, 1e6), 2)
    assert wide.info["truncated"] < 1e-6
    plain = run(None, 2)
    assert "truncated" not in plain.info
    assert np.any((plain.values < lo) | (plain.values > hi))
