"""Rubin's rules (mlmi.pool) against R mice 3.15, plus properties and input checks.

Fixtures: tests/fixtures/mice_pool.json, made by tools/make_mice_pool_fixtures.R
(mice's pool.scalar on synthetic cases, and mice's full pipeline on nhanes).
"""

from __future__ import annotations

import itertools
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlmi.exceptions import InputError
from mlmi.pool import POOLED_COLUMNS, TABLE_COLUMNS, pooled_table, rubin, t_quantile

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mice_pool.json"

RTOL = 1e-8
# Location-type quantities are compared absolutely on the scale of their standard
# error (an estimate near 0 has no meaningful relative error); everything else
# relatively (an expected 0 must then be matched exactly).
LOCATION = ("estimate", "conf_low", "conf_high")


@cache
def _fixtures() -> dict:
    with FIXTURE.open() as fh:
        return json.load(fh)


def _vec(x) -> np.ndarray:
    """A fixture vector (a bare number when p = 1; "Inf"/"-Inf" strings allowed)."""
    if not isinstance(x, list):
        x = [x]
    return np.array([float(v) for v in x])


def _assert_matches(name: str, got, want, scale=None) -> float:
    """Check got vs mice's want to RTOL; return the max relative deviation."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape, name
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), f"{name}: {got} vs mice {want}"
    g, w = got[~inf], want[~inf]
    ref = np.abs(w) if scale is None else np.maximum(np.abs(w), np.asarray(scale)[~inf])
    err = np.abs(g - w)
    ok = (err <= RTOL * ref) | (g == w)
    assert ok.all(), f"{name}: {got} vs mice {want} (deviation {err})"
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(err == 0, 0.0, err / ref)
    return float(rel.max(initial=0.0))


def _scalar_cases() -> list[dict]:
    return _fixtures()["scalar"]


def _pipeline_cases() -> list[dict]:
    return _fixtures()["pipeline"]


def test_fixture_provenance():
    fx = _fixtures()
    assert fx["mice_version"] == "3.15.0"
    assert len(fx["scalar"]) >= 10 and len(fx["pipeline"]) >= 1
    ms = {c["m"] for c in fx["scalar"]}
    assert {2, 3, 5, 20, 100} <= ms
    assert {c["p"] for c in fx["scalar"]} == {1, 3}
    assert None in {c["dfcom"] for c in fx["scalar"]}


# ---------------------------------------------------------------------------
# equality with mice
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _scalar_cases(), ids=lambda c: c["name"])
def test_rubin_matches_mice_pool_scalar(case):
    q = np.array(case["estimates"])
    u = np.array(case["variances"])
    assert q.shape == (case["m"], case["p"])
    res = rubin(q, u, dfcom=case["dfcom"])
    assert list(res.columns) == list(POOLED_COLUMNS)
    assert list(res.index) == list(range(case["p"]))
    assert res.attrs["m"] == case["m"]
    se = res["std_error"].to_numpy()
    for col, want in case["expected"].items():
        _assert_matches(
            f"{case['name']}:{col}", res[col], _vec(want), scale=se if col in LOCATION else None
        )
    if case["p"] == 1:  # a 1-D input is one parameter
        res1 = rubin(q[:, 0], u[:, 0], dfcom=case["dfcom"])
        pd.testing.assert_frame_equal(res1, res)


@pytest.mark.parametrize("case", _scalar_cases(), ids=lambda c: c["name"])
def test_pooled_table_matches_mice_summary(case):
    res = rubin(np.array(case["estimates"]), np.array(case["variances"]), case["dfcom"])
    for summ in case["summaries"]:
        tab = pooled_table(res, level=summ["level"])
        assert list(tab.columns) == list(TABLE_COLUMNS)
        assert tab.attrs["level"] == summ["level"]
        se = tab["std_error"].to_numpy()
        for col in ("std_error", "statistic", "p_value", "conf_low", "conf_high"):
            _assert_matches(
                f"{case['name']}@{summ['level']}:{col}",
                tab[col],
                _vec(summ[col]),
                scale=se if col in LOCATION else None,
            )


@pytest.mark.parametrize("case", _pipeline_cases(), ids=lambda c: c["name"])
def test_matches_mice_pool_pipeline(case):
    terms = case["terms"]
    q = pd.DataFrame(case["estimates"], columns=terms)
    u = pd.DataFrame(case["variances"], columns=terms)
    pooled = case["pooled"]
    # mice's pool() takes dfcom = df.residual = n - k for lm fits
    assert pooled["dfcom"] == case["nobs"] - len(terms)

    tab = pooled_table(rubin(q, u, dfcom=pooled["dfcom"]), level=0.95)
    assert list(tab.index) == terms
    se = tab["std_error"].to_numpy()
    for col in ("estimate", "ubar", "b", "t", "df", "riv", "lambda", "fmi"):
        _assert_matches(
            f"{case['name']}:pooled:{col}",
            tab[col],
            _vec(pooled[col]),
            scale=se if col in LOCATION else None,
        )
    summ = case["summary"]
    for col in ("estimate", "std_error", "statistic", "df", "p_value", "conf_low", "conf_high"):
        _assert_matches(
            f"{case['name']}:summary:{col}",
            tab[col],
            _vec(summ[col]),
            scale=se if col in LOCATION else None,
        )

    # mice pools std.error^2 from broom::tidy rather than diag(vcov): same to 1e-8
    u2 = pd.DataFrame(np.square(case["std_errors"]), columns=terms)
    res2 = rubin(q, u2, dfcom=pooled["dfcom"])
    _assert_matches("ubar via std.error^2", res2["ubar"], _vec(pooled["ubar"]))


def test_t_quantile_matches_r_qt():
    fx = _fixtures()["t_quantiles"]
    got = t_quantile(np.array(fx["p"]), np.array(fx["df"]))
    dev = _assert_matches("qt", got, _vec(fx["q"]))
    assert dev < 1e-10
    # the far tail that scipy's t.ppf gets wrong (it saturates near 1e152)
    assert t_quantile(0.025, 0.0056234132519034911) == pytest.approx(-8.59915e229, rel=1e-5)
    assert np.isneginf(t_quantile(0.025, 1e-3)) and np.isposinf(t_quantile(0.975, 1e-3))


def test_p_values_match_mice_formula():
    fx = _fixtures()["t_pvalues"]
    n = len(fx["df"])
    pooled = pd.DataFrame({"estimate": fx["statistic"], "std_error": np.ones(n), "df": fx["df"]})
    tab = pooled_table(pooled)
    _assert_matches("p_value", tab["p_value"], _vec(fx["p_value"]))


def test_b_zero_case_from_mice_is_finite():
    case = next(c for c in _scalar_cases() if c["name"] == "b0_m5_p3_dfcom100")
    res = rubin(np.array(case["estimates"]), np.array(case["variances"]), case["dfcom"])
    row = res.iloc[1]
    assert row["b"] == 0 and row["riv"] == 0 and row["lambda"] == 0
    assert row["t"] == row["ubar"]
    assert np.isfinite(row["df"]) and 0 < row["df"] < case["dfcom"]
    assert row["fmi"] == pytest.approx(2 / (row["df"] + 3), rel=1e-15)


def test_b_zero_with_infinite_dfcom_uses_lambda_floor():
    q = np.full(4, 0.1)
    u = np.array([0.5, 0.6, 0.7, 0.8])
    res = rubin(q, u)
    assert res.loc[0, "estimate"] == 0.1
    assert res.loc[0, "b"] == 0 and res.loc[0, "riv"] == 0
    assert res.loc[0, "df"] == pytest.approx(3 / 1e-4**2, rel=1e-14)


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------

PROPS = settings(derandomize=True, max_examples=150, deadline=None)


@st.composite
def pooling_inputs(draw, min_m=2, max_m=30):
    m = draw(st.integers(min_m, max_m))
    p = draw(st.integers(1, 4))
    q = draw(arrays(np.float64, (m, p), elements=st.floats(-1e3, 1e3)))
    u = draw(arrays(np.float64, (m, p), elements=st.floats(1e-6, 1e3)))
    return q, u


dfcoms = st.one_of(st.none(), st.floats(0.5, 1e7))


@PROPS
@given(pooling_inputs(), dfcoms, st.data())
def test_invariant_to_permuting_imputations(qu, dfcom, data):
    q, u = qu
    perm = data.draw(st.permutations(range(q.shape[0])))
    a = rubin(q, u, dfcom)
    b = rubin(q[list(perm)], u[list(perm)], dfcom)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@PROPS
@given(pooling_inputs(), dfcoms)
def test_basic_inequalities(qu, dfcom):
    res = rubin(*qu, dfcom)
    assert (res["t"] >= res["ubar"]).all()
    assert (res["b"] >= 0).all() and (res["riv"] >= 0).all()
    assert ((res["lambda"] >= 0) & (res["lambda"] <= 1)).all()
    assert ((res["fmi"] > 0) & (res["fmi"] < 1)).all()
    assert (res["df"] > 0).all() and np.isfinite(res["df"]).all()
    if dfcom is not None:
        assert (res["df"] < dfcom).all()
    np.testing.assert_array_equal(res["std_error"], np.sqrt(res["t"]))


@PROPS
@given(pooling_inputs(), st.floats(0.5, 1e6), st.floats(1.0, 1e3))
def test_df_increases_with_dfcom(qu, dfcom, factor):
    lo = rubin(*qu, dfcom)["df"].to_numpy()
    hi = rubin(*qu, dfcom * factor)["df"].to_numpy()
    old = rubin(*qu, None)["df"].to_numpy()
    assert (hi >= lo).all()
    assert (hi <= old).all()


@PROPS
@given(pooling_inputs())
def test_df_tends_to_old_rubin_df(qu):
    inf = rubin(*qu, None)
    dfold = inf["df"].to_numpy()
    lam = np.maximum(inf["lambda"].to_numpy(), 1e-4)
    # matches the Rubin (1987) df itself
    np.testing.assert_allclose(dfold, (qu[0].shape[0] - 1) / lam**2, rtol=1e-14)
    gaps = [np.abs(rubin(*qu, 10.0**k)["df"].to_numpy() - dfold) for k in range(1, 16, 2)]
    for a, b in itertools.pairwise(gaps):
        assert (b <= a).all()
    # dfold / dfobs ~ 1e-10 here, so df = dfold to ~1e-10
    big = float(np.max(1e10 * dfold / (1 - lam)))
    np.testing.assert_allclose(rubin(*qu, big)["df"], dfold, rtol=1e-8)
    pd.testing.assert_frame_equal(rubin(*qu, math.inf), inf)


@PROPS
@given(pooling_inputs(), dfcoms, st.floats(0.5, 0.999))
def test_pooled_table_properties(qu, dfcom, level):
    res = rubin(*qu, dfcom)
    tab = pooled_table(res, level)
    pd.testing.assert_frame_equal(tab[list(POOLED_COLUMNS)], res)
    assert ((tab["p_value"] >= 0) & (tab["p_value"] <= 1)).all()
    assert (tab["conf_low"] <= tab["estimate"]).all()
    assert (tab["conf_high"] >= tab["estimate"]).all()
    wider = pooled_table(res, min(level + (1 - level) / 2, 0.9999))
    assert ((wider["conf_high"] - wider["conf_low"]) >= (tab["conf_high"] - tab["conf_low"])).all()
    # the interval excludes 0 exactly when the test rejects at 1 - level
    excl = (tab["conf_low"] > 0) | (tab["conf_high"] < 0)
    rej = tab["p_value"] < 1 - level
    close = np.isclose(tab["p_value"], 1 - level, rtol=1e-6)
    assert (excl == rej)[~close].all()


# ---------------------------------------------------------------------------
# input forms
# ---------------------------------------------------------------------------


def test_dataframe_names_and_alignment():
    rng = np.random.default_rng(1)
    q = pd.DataFrame(rng.normal(size=(5, 3)), columns=["a", "b", "c"])
    u = pd.DataFrame(rng.uniform(0.1, 1, size=(5, 3)), columns=["a", "b", "c"])
    res = rubin(q, u, 50)
    assert list(res.index) == ["a", "b", "c"]
    # variances with columns in another order are aligned by name
    pd.testing.assert_frame_equal(rubin(q, u[["c", "a", "b"]], 50), res)
    # names from whichever argument is a DataFrame
    assert list(rubin(q, u.to_numpy(), 50).index) == ["a", "b", "c"]
    assert list(rubin(q.to_numpy(), u, 50).index) == ["a", "b", "c"]
    np.testing.assert_array_equal(rubin(q.to_numpy(), u.to_numpy(), 50).to_numpy(), res.to_numpy())
    s = rubin(q["b"], u["b"], 50)
    assert list(s.index) == ["b"]
    np.testing.assert_array_equal(s.to_numpy(), res.loc[["b"]].to_numpy())
    # lists work too
    pd.testing.assert_frame_equal(
        rubin([1.0, 2.0, 4.0], [1.0, 1.0, 1.0]),
        rubin(np.array([[1.0], [2.0], [4.0]]), np.ones((3, 1))),
    )


def test_hand_computed_example():
    q = np.array([1.0, 2.0, 3.0])
    u = np.array([0.5, 1.0, 1.5])
    r = rubin(q, u, dfcom=10).iloc[0]
    k = 1 + 1 / 3
    lam = k * 1.0 / (1.0 + k)
    dfold = 2 / lam**2
    dfobs = 11 / 13 * 10 * (1 - lam)
    df = dfold * dfobs / (dfold + dfobs)
    assert r["estimate"] == 2.0 and r["ubar"] == 1.0 and r["b"] == 1.0
    assert r["t"] == pytest.approx(1 + k)
    assert r["riv"] == pytest.approx(k)
    assert r["lambda"] == pytest.approx(lam)
    assert r["df"] == pytest.approx(df)
    assert r["fmi"] == pytest.approx((k + 2 / (df + 3)) / (k + 1))


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

Q = np.array([[1.0, 2.0], [1.5, 2.5], [0.5, 3.0]])
U = np.array([[0.1, 0.2], [0.1, 0.3], [0.2, 0.2]])


@pytest.mark.parametrize(
    ("q", "u", "dfcom", "match"),
    [
        (Q, U[:, :1], None, r"shapes differ: \(3, 2\) vs \(3, 1\)"),
        (Q, U[:2], None, r"shapes differ"),
        (Q[:1], U[:1], None, r"at least 2 imputations.*m = 1"),
        (Q[:, :0], U[:, :0], None, r"no parameters"),
        (np.ones((3, 2, 2)), np.ones((3, 2, 2)), None, r"3-D"),
        (1.0, 1.0, None, r"scalar"),
        (["a", "b"], [1.0, 1.0], None, r"estimates: must be numeric"),
        (Q, np.where(U == 0.3, -0.3, U), None, r"imputation 1 .*parameter 1 is negative"),
        (Q, np.where(U == 0.3, np.nan, U), None, r"variances: must be finite.*not finite"),
        (Q, np.where(U == 0.3, np.inf, U), None, r"variances: must be finite.*not finite"),
        (np.where(Q == 3.0, np.nan, Q), U, None, r"estimates: must be finite"),
        (
            Q,
            np.where(np.arange(2) == 0, 0.0, U),
            None,
            r"every within-imputation variance is 0.*\[0\]",
        ),
        (Q, U, 0, r"dfcom: must be > 0"),
        (Q, U, -5.0, r"dfcom: must be > 0"),
        (Q, U, -math.inf, r"dfcom: must be > 0"),
        (Q, U, math.nan, r"dfcom: must be > 0"),
        (Q, U, "100", r"dfcom: must be a number"),
        (Q, U, True, r"dfcom: must be a number"),
    ],
)
def test_input_errors(q, u, dfcom, match):
    with pytest.raises(InputError, match=match):
        rubin(q, u, dfcom)


def test_dataframe_column_errors():
    q = pd.DataFrame(Q, columns=["a", "b"])
    with pytest.raises(InputError, match=r"name different parameters"):
        rubin(q, pd.DataFrame(U, columns=["a", "c"]))
    with pytest.raises(InputError, match=r"duplicated"):
        rubin(pd.DataFrame(Q, columns=["a", "a"]), pd.DataFrame(U, columns=["a", "a"]))


def test_zero_variance_in_some_imputations_is_fine():
    u = U.copy()
    u[0, 0] = 0.0
    assert np.isfinite(rubin(Q, u).to_numpy()).all()


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, math.nan, "0.95", True])
def test_pooled_table_level_errors(level):
    with pytest.raises(InputError, match=r"level: must be a number strictly between 0 and 1"):
        pooled_table(rubin(Q, U), level)


def test_pooled_table_input_errors():
    with pytest.raises(InputError, match=r"missing column\(s\) \['df'\]"):
        pooled_table(rubin(Q, U).drop(columns="df"))
    with pytest.raises(InputError, match=r"expected the DataFrame returned by rubin"):
        pooled_table(rubin(Q, U).to_numpy())
