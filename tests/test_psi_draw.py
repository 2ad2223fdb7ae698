"""psi_draw=: the draws of Psi*, the between-study covariance of a multilevel imputation
model (issue 14; mlmi.methods._multilevel.PSI_DRAWS).

References are independent of the code under test: the ML fixed point of a linear mixed
model (Psi_hat = mean of E[b_i b_i' | y_i], the EM identity) for the shrinkage correction,
a dense profiled likelihood differenced numerically for the ml-normal Hessian, and the
closed-form moments of the Wishart / normal draws. Monte Carlo tolerances are stated
where used."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.exceptions import ImputationWarning, InputError
from mlmi.glmm import fit_arrays
from mlmi.glmm._linalg import theta_to_lambda
from mlmi.methods._multilevel import (
    PSI_DRAWS,
    _lmm_theta_hessian,
    _theta_cov,
    draw_psi,
    draw_psi_star,
)
from mlmi.methods.base import DEFAULT_PSI_DRAW
from mlmi.simulation import ampute, generate

RANDOM = {"x1": ["y"], "x2": ["y"]}


def _lmm_data(seed: int = 4, k: int = 25, n: int = 30):
    """A linear mixed model with a random intercept and slope, known Psi."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(k), n)
    x = rng.standard_normal(k * n)
    psi = np.array([[1.0, 0.3], [0.3, 0.5]])
    b = rng.multivariate_normal(np.zeros(2), psi, size=k)
    y = 0.5 + 0.8 * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(k * n)
    X = np.column_stack([np.ones_like(x), x])
    return y, X, X.copy(), g


@pytest.fixture(scope="module")
def lmm_fit():
    y, X, W, g = _lmm_data()
    return fit_arrays(y, X, W, g, "gaussian"), (y, X, W, g)


@pytest.fixture(scope="module")
def glmm_fit():
    rng = np.random.default_rng(8)
    d = generate("binary", "strong", 20, rng, n_total=2000)
    y = d["y"].to_numpy(float)
    X = np.column_stack([np.ones(len(d)), d["x1"], d["x2"]])
    return fit_arrays(y, X, X[:, :2], d["st"].to_numpy(), "binomial")


# ----------------------------------------------------------------------- corrected
def test_corrected_lambda_is_the_ml_fixed_point_of_a_linear_mixed_model(lmm_fit):
    """At the ML estimate of an LMM, Psi_hat = (1/m) sum_i (b_hat_i b_hat_i' + Var(b_i|y_i))
    (the EM algorithm's fixed point): the corrected Lambda_hat / m is Psi_hat, while the
    paper's sum of b_hat b_hat' alone falls short of it (shrinkage)."""
    fit, _ = lmm_fit
    m = fit.b.shape[0]
    corrected = (fit.b.T @ fit.b + fit.cond_cov.sum(axis=0)) / m
    np.testing.assert_allclose(corrected, fit.psi, rtol=2e-3, atol=2e-4)
    paper = fit.b.T @ fit.b / m
    assert np.all(np.diag(paper) < np.diag(fit.psi))


def test_corrected_draw_is_the_paper_wishart_with_corrected_lambda(glmm_fit):
    fit = glmm_fit
    got, info = draw_psi_star(fit, "corrected", np.random.default_rng(5))
    want, _ = draw_psi(fit.b.T @ fit.b + fit.cond_cov.sum(axis=0), fit.b.shape[0],
                       np.random.default_rng(5))
    np.testing.assert_array_equal(got, want)
    assert info == {"psi_floored": 0, "psi_fallbacks": 0}
    paper, _ = draw_psi_star(fit, "paper", np.random.default_rng(5))
    want_paper, _ = draw_psi(fit.b.T @ fit.b, fit.b.shape[0], np.random.default_rng(5))
    np.testing.assert_array_equal(paper, want_paper)


# ----------------------------------------------------------------------- ml-normal
def _dense_profiled_nll(theta, y, X, W, g):
    """-loglik of an LMM profiled over beta and sigma, from the dense marginal
    covariances V_i = W_i Lambda Lambda' W_i' + I (no code shared with the engine)."""
    lam = theta_to_lambda(np.asarray(theta, float), W.shape[1])
    G = lam @ lam.T
    XtVX = np.zeros((X.shape[1], X.shape[1]))
    XtVy = np.zeros(X.shape[1])
    logdet = 0.0
    parts = []
    for i in np.unique(g):
        r = g == i
        V = W[r] @ G @ W[r].T + np.eye(r.sum())
        Vi = np.linalg.inv(V)
        XtVX += X[r].T @ Vi @ X[r]
        XtVy += X[r].T @ Vi @ y[r]
        logdet += np.linalg.slogdet(V)[1]
        parts.append((r, Vi))
    beta = np.linalg.solve(XtVX, XtVy)
    r2 = sum(float((y[r] - X[r] @ beta) @ Vi @ (y[r] - X[r] @ beta)) for r, Vi in parts)
    n = y.size
    return 0.5 * n * np.log(2 * np.pi * r2 / n) + 0.5 * logdet + 0.5 * n


def test_lmm_theta_hessian_matches_dense_likelihood(lmm_fit):
    """Second central differences (h = 1e-3) of the dense profiled likelihood; the
    engine's forward differences of the analytic gradient agree to ~1e-3 relative."""
    fit, (y, X, W, g) = lmm_fit
    H = _lmm_theta_hessian(fit, y, X, W, g)
    th = fit.theta
    n = th.size
    h = 1e-3
    ref = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            ea, eb = np.eye(n)[a] * h, np.eye(n)[b] * h
            ref[a, b] = (_dense_profiled_nll(th + ea + eb, y, X, W, g)
                         - _dense_profiled_nll(th + ea - eb, y, X, W, g)
                         - _dense_profiled_nll(th - ea + eb, y, X, W, g)
                         + _dense_profiled_nll(th - ea - eb, y, X, W, g)) / (4 * h * h)
    np.testing.assert_allclose(0.5 * (H + H.T), ref, rtol=5e-3, atol=5e-3 * np.abs(ref).max())


def test_glmm_theta_cov_is_the_theta_block_of_the_inverse_hessian(glmm_fit):
    fit = glmm_fit
    p = fit.beta.size
    full = np.linalg.inv(fit.hessian)
    cov, degenerate = _theta_cov(fit, None)
    assert not degenerate
    np.testing.assert_allclose(cov, full[p:, p:], rtol=1e-6, atol=1e-10)


def test_ml_normal_draws_psi_from_its_delta_method_normal(glmm_fit):
    """4000 draws on a fit far from the boundary (strong heterogeneity, 20 studies):
    Psi* is positive semi-definite every time; the mean of each element is Psi_hat within
    4 MC SEs; the variance of each element matches the delta-method variance J C J',
    with J = d vec(Psi) / d theta taken here by central differences of Lambda Lambda'
    (independent of the code's analytic J), within 4 MC SEs of a sample variance
    (relative SE sqrt(2 / 4000) = 2.2 %)."""
    fit = glmm_fit
    cov, degenerate = _theta_cov(fit, None)
    assert not degenerate
    q = 2
    h = 1e-6
    J = np.empty((q * q, fit.theta.size))
    for t in range(fit.theta.size):
        e = np.zeros(fit.theta.size)
        e[t] = h
        up, dn = theta_to_lambda(fit.theta + e, q), theta_to_lambda(fit.theta - e, q)
        J[:, t] = ((up @ up.T) - (dn @ dn.T)).ravel() / (2 * h)
    want_var = np.diag(J @ cov @ J.T).reshape(q, q)
    rng = np.random.default_rng(12)
    draws = np.array([draw_psi_star(fit, "ml-normal", rng)[0] for _ in range(4000)])
    assert np.all(np.linalg.eigvalsh(draws) > -1e-12)
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - fit.psi) < 4 * se)
    rel = draws.var(axis=0) / want_var - 1
    assert np.all(np.abs(rel) < 4 * np.sqrt(2 / len(draws))), rel


def test_ml_normal_near_zero_variance_regression():
    """The failure that moved ml-normal to the variance scale: in the simulation's
    binary-moderate-k6 replication 37 (seed 1414) the count x2's slope SD was estimated
    near 0 (0.05) with 4 observing studies; a normal on theta (the SD scale) then drew
    slope variances of 10-300 and 1719 imputed counts hit the clipping guard. On the
    variance scale: none, and every Psi* stays small."""
    import mlmi.methods._multilevel as ml
    from mlmi.simulation.replication import replicate

    seen = []
    orig = ml.draw_psi_star

    def spy(fit, psi_draw, rng, **kw):
        psi, info = orig(fit, psi_draw, rng, **kw)
        seen.append(float(np.max(np.diag(psi))))
        return psi, info

    s = {"outcome": "binary", "heterogeneity": "moderate", "studies": 6, "sys": 0.3,
         "mechanism": "mar"}
    ml.draw_psi_star = spy
    try:
        out = replicate(s, 37, 1414, methods=("MLMI[ml-normal]",))
    finally:
        ml.draw_psi_star = orig
    assert out["error"].eq("").all()
    assert out["clipped"].max() == 0
    assert len(seen) == 100 and max(seen) < 5.0


def test_ml_normal_gaussian_scales_by_sigma_star(lmm_fit):
    fit, data = lmm_fit
    a, _ = draw_psi_star(fit, "ml-normal", np.random.default_rng(1), sigma_star=1.0,
                         lmm_data=data)
    b, _ = draw_psi_star(fit, "ml-normal", np.random.default_rng(1), sigma_star=2.0,
                         lmm_data=data)
    np.testing.assert_allclose(b, 4.0 * a)


def test_ml_normal_without_hessian_falls_back_counted(glmm_fit):
    import copy

    fit = copy.copy(glmm_fit)
    fit.hessian = None
    psi, info = draw_psi_star(fit, "ml-normal", np.random.default_rng(2))
    assert info["psi_fallbacks"] == 1
    assert np.all(np.linalg.eigvalsh(psi) > 0)


def test_unknown_psi_draw_is_an_error(glmm_fit):
    with pytest.raises(InputError, match="psi_draw='bogus'"):
        draw_psi_star(glmm_fit, "bogus", np.random.default_rng(0))


# ----------------------------------------------------------------------- impute
@pytest.fixture(scope="module")
def paper_data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    complete = generate("continuous", "moderate", 10, rng, n_total=600)
    return ampute(complete, 0.3, "mar", rng)


@pytest.mark.parametrize("draw", PSI_DRAWS)
def test_impute_with_each_draw_every_family(paper_data, draw):
    """x1 binary (2l.bin), x2 count (2l.pois), continuous outcome y made incomplete too
    (2l.norm): every family draws Psi* by psi_draw; observed values never change."""
    data = paper_data.copy()
    data.loc[data.index[::17], "y"] = np.nan
    imp = mlmi.impute(data, "st", m=2, maxit=2, random=RANDOM, seed=3, psi_draw=draw)
    d = imp.diagnostics
    assert {"psi_floored", "psi_fallbacks"} <= set(d.columns)
    assert d["psi_fallbacks"].sum() == 0
    assert set(d["variable"]) == {"x1", "x2", "y"}
    for i in (1, 2):
        done = imp.complete(i)
        assert not done.isna().any().any()
        obs = data.notna()
        for col in data.columns:
            np.testing.assert_array_equal(done.loc[obs[col], col], data.loc[obs[col], col])
    assert "psi_fallbacks" in imp.summary().columns


def test_impute_rejects_unknown_psi_draw(paper_data):
    with pytest.raises(InputError, match="psi_draw='wishart'"):
        mlmi.impute(paper_data, "st", psi_draw="wishart")


def test_psi_draw_changes_only_what_it_should(paper_data):
    """The same seed with another psi_draw gives other imputations (the draw is used)."""
    a = mlmi.impute(paper_data, "st", m=1, maxit=1, random=RANDOM, seed=2, psi_draw="paper")
    b = mlmi.impute(paper_data, "st", m=1, maxit=1, random=RANDOM, seed=2,
                    psi_draw="ml-normal")
    assert not a.complete(1).equals(b.complete(1))


def test_resolve_auto_at_the_finite_variance_boundary():
    """The inverse Wishart IW(m_obs, Lambda_hat) in Q dimensions has a finite variance iff
    m_obs > Q + 3: "auto" is the corrected Wishart from m_obs = Q + 4 on, ml-normal below."""
    from mlmi.methods._multilevel import resolve_psi_draw

    for Q in (1, 2, 6):
        assert resolve_psi_draw("auto", Q + 4, Q) == "corrected"
        assert resolve_psi_draw("auto", Q + 3, Q) == "ml-normal"
        assert resolve_psi_draw("auto", 1, Q) == "ml-normal"
        for draw in ("paper", "corrected", "ml-normal"):
            assert resolve_psi_draw(draw, 1, Q) == draw


def _pin(data: pd.DataFrame, draw) -> mlmi.Imputed:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmi.impute(data, "st", m=2, maxit=2, random=RANDOM, seed=5, psi_draw=draw)


def test_auto_is_the_corrected_draw_with_enough_studies_and_ml_normal_with_few(paper_data):
    """10 studies, 7 observe x1 and x2 (q = 2, m_obs >= q + 4): "auto" gives the corrected
    Wishart's imputations bit for bit and counts no ml-normal step. Only 4 observing
    studies (m_obs <= q + 3): bit for bit ml-normal's, every multilevel step counted."""
    auto, corrected = _pin(paper_data, "auto"), _pin(paper_data, "corrected")
    for i in (1, 2):
        pd.testing.assert_frame_equal(auto.complete(i), corrected.complete(i))
    assert not auto.complete(1).equals(_pin(paper_data, "paper").complete(1))
    assert auto.summary().loc[["x1", "x2"], "psi_auto_ml_normal"].sum() == 0

    few = paper_data.copy()
    for var in ("x1", "x2"):
        observing = sorted(few.loc[few[var].notna(), "st"].unique())
        few.loc[~few["st"].isin(observing[:4]), var] = np.nan
    auto, mln = _pin(few, "auto"), _pin(few, "ml-normal")
    paper = _pin(few, "paper")
    for i in (1, 2):
        pd.testing.assert_frame_equal(auto.complete(i), mln.complete(i))
    assert not auto.complete(1).equals(paper.complete(1))
    steps = auto.diagnostics
    multilevel = steps[steps["variable"].isin(["x1", "x2"])]
    assert len(multilevel) and (multilevel["psi_auto_ml_normal"] == 1).all()
    assert (auto.summary().loc[["x1", "x2"], "psi_draw"] == "auto").all()


def test_few_observing_studies_warns_naming_the_variable(paper_data):
    """x1 observed in 3 studies with a random slope (q = 2: 3 variances/covariances)."""
    data = paper_data.copy()
    observing = sorted(data.loc[data["x1"].notna(), "st"].unique())
    data.loc[~data["st"].isin(observing[:3]), "x1"] = np.nan
    with pytest.warns(ImputationWarning, match=r"only 3 studies observe 'x1'.*random "
                                               r"intercept only"):
        mlmi.impute(data, "st", m=1, maxit=1, random={"x1": ["y"]}, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImputationWarning)
        try:
            mlmi.impute(data, "st", m=1, maxit=1, seed=1)  # random intercept only
        except ImputationWarning as w:
            assert "studies observe" not in str(w)


def test_cli_psi_draw(tmp_path, paper_data):
    from mlmi.cli import main

    src = tmp_path / "d.csv"
    paper_data.to_csv(src, index=False)
    out = tmp_path / "o.csv"
    assert main(["impute", str(src), "--cluster", "st", "--m", "1", "--maxit", "1",
                 "--seed", "1", "--psi-draw", "ml-normal", "--out", str(out),
                 "--quiet"]) == 0
    diag = pd.read_csv(tmp_path / "o.diagnostics.csv")
    assert "psi_fallbacks" in diag.columns
    assert main(["impute", str(src), "--cluster", "st", "--psi-draw", "nope", "--out",
                 str(out)]) == 2


def test_cli_choices_are_the_library_draws():
    from mlmi.cli import _parse_choice
    from mlmi.exceptions import InputError

    for draw in PSI_DRAWS:  # one for all, or per variable (issue 11)
        assert _parse_choice([draw], "--psi-draw", PSI_DRAWS, DEFAULT_PSI_DRAW) == draw
        assert _parse_choice([f"x1={draw}"], "--psi-draw", PSI_DRAWS,
                             DEFAULT_PSI_DRAW) == {"x1": draw}
    assert _parse_choice(None, "--psi-draw", PSI_DRAWS, DEFAULT_PSI_DRAW) == DEFAULT_PSI_DRAW
    with pytest.raises(InputError, match="--psi-draw 'nope': use one of"):
        _parse_choice(["nope"], "--psi-draw", PSI_DRAWS, DEFAULT_PSI_DRAW)


# ----------------------------------------------------------------------- few studies
def test_ml_normal_never_needs_the_count_guard_with_few_observing_studies():
    """The paper's 6-study design, x2 (count, 2l.pois) fitted to the complete cases:
    2-3 observing studies for q = 2 random effects (m_obs <= q + 3, where the inverse
    Wishart has infinite variance). For a systematically missing study, 1000 draws of
    (Psi*, b*) each: the paper's draw puts the largest log-mean above the clipping guard
    (count_mean_cap) in some draws of every data set — exp() of it overflows in some — and
    ml-normal in none. Fixed seeds; the counts below were 4-115 of 4000 for the paper's
    draw when this test was written, so 'some of 1000' has a wide margin."""
    from mlmi.methods.base import count_mean_cap

    paper_hits = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        d = ampute(generate("binary", "weak", 6, rng), 0.3, "mar", rng)
        cc = d[d["x2"].notna() & d["x1"].notna()]
        y = cc["x2"].to_numpy(float)
        X = np.column_stack([np.ones(len(cc)), cc["y"], cc["x1"]])
        fit = fit_arrays(y, X, X[:, :2], cc["st"].to_numpy(), "poisson")
        assert fit.b.shape[0] <= 2 + 3
        cap = count_mean_cap(y)
        Xall = np.column_stack([np.ones(len(d)), d["y"], d["x1"].fillna(0)])
        for draw in ("paper", "ml-normal"):
            r = np.random.default_rng(1)
            hits = 0
            for _ in range(1000):
                psi, _ = draw_psi_star(fit, draw, r)
                w, V = np.linalg.eigh(psi)
                b = (V * np.sqrt(np.clip(w, 0, None))) @ r.standard_normal(2)
                eta = Xall @ fit.beta + Xall[:, :2] @ b
                hits += int(eta.max() > cap)
            if draw == "ml-normal":
                assert hits == 0, f"seed {seed}: ml-normal exceeded the count guard {hits} times"
            else:
                paper_hits.append(hits)
    assert sum(h > 0 for h in paper_hits) >= 4, paper_hits


# ----------------------------------------------------------------------- the default
@pytest.mark.slow
def test_evidence_for_the_default_on_fresh_replications():
    """The findings behind the default (docs/results/psi-draw.md), re-checked on fresh
    replications (seed 2614; the evidence run used 1414).

    1. Binary outcome, moderate heterogeneity, 30 studies of 100, MAR, 30 % systematic:
       the shrinkage correction raises the imputed data's omega1 over the paper's draw
       (evidence run: paired difference +0.075, MC SE 0.010, 70 replications; here 30,
       about 5 SEs) — asserted > 3 paired SEs; and its omega1 - REF is within 3 SEs of 0.
       This is the paper draw's shrinkage bias, which the default ("auto" = the corrected
       draw with this many studies) removes.
    2. Binary outcome, weak heterogeneity, 6 studies (4 observe x1 and x2, q = 2): the
       paper's draw needs the count clipping guard in some replications (evidence run: 8
       of 40), ml-normal — and so the default, bit for bit — in none: asserted over 20
       replications (expected paper count 4; P(0 of 20) = 0.01 at the evidence rate;
       ml-normal: 0 of 446 in the evidence run).
    """
    from mlmi.simulation.replication import replicate

    s30 = {"outcome": "binary", "heterogeneity": "moderate", "studies": 30, "sys": 0.3,
           "mechanism": "mar"}
    methods = ("REF", "MLMI[paper]", "MLMI[corrected]")
    rows = [replicate(s30, r, 2614, methods=methods) for r in range(30)]
    om = np.array([[f.set_index(["method", "parameter"]).loc[(mt, "omega1"), "estimate"]
                    for mt in methods] for f in rows])
    gain = om[:, 2] - om[:, 1]
    assert gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(len(gain)), gain.mean()
    err = om[:, 2] - om[:, 0]
    assert abs(err.mean()) < 3 * err.std(ddof=1) / np.sqrt(len(err)), err.mean()

    s6 = dict(s30, studies=6, heterogeneity="weak")
    clipped = {"MLMI[paper]": 0, "MLMI[ml-normal]": 0, "MLMI[auto]": 0}
    for r in range(20):
        out = replicate(s6, r, 2614, methods=tuple(clipped))
        for mt in clipped:
            clipped[mt] += int(out.loc[out["method"] == mt, "clipped"].iloc[0] > 0)
        # the default with m_obs = 4 <= q + 3 is ml-normal, bit for bit
        est = out.set_index(["method", "parameter"])["estimate"]
        np.testing.assert_array_equal(est.loc["MLMI[auto]"], est.loc["MLMI[ml-normal]"])
    assert clipped["MLMI[ml-normal]"] == 0, clipped
    assert clipped["MLMI[auto]"] == 0, clipped
    assert clipped["MLMI[paper]"] > 0, clipped


@pytest.mark.slow
def test_default_psi_draw_is_the_corrected_draw_where_it_is_proper():
    """The chosen default ("auto", docs/results/psi-draw.md) on fresh replications (seed
    2614) of the binary-outcome MAR scenarios with pi_sys = 0.3: at 10 and 30 studies
    (m_obs = 7, 21 >= q + 4) its analysis results are the corrected draw's, bit for bit;
    at 6 studies (m_obs = 4 <= q + 3) it never needs the count clipping guard (point 3 of
    issue 14) — 10 replications per heterogeneity level, where the Wishart draws needed
    the guard in 10-20 % of the evidence run's replications."""
    from mlmi.simulation.replication import replicate

    assert DEFAULT_PSI_DRAW == "auto"
    base = {"outcome": "binary", "sys": 0.3, "mechanism": "mar"}
    for studies in (10, 30):
        s = dict(base, heterogeneity="moderate", studies=studies)
        for r in range(3):
            out = replicate(s, r, 2614, methods=("MLMI[auto]", "MLMI[corrected]"))
            est = out.set_index(["method", "parameter"])["estimate"]
            np.testing.assert_array_equal(est.loc["MLMI[auto]"], est.loc["MLMI[corrected]"])
    for het in ("weak", "moderate", "strong"):
        s = dict(base, heterogeneity=het, studies=6)
        for r in range(10):
            out = replicate(s, r, 2614, methods=("MLMI[auto]",))
            assert out["clipped"].iloc[0] == 0, (het, r)
