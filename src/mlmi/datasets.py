"""A synthetic IPD meta-analysis shaped like the paper's chronic kidney disease study.

**The data are synthetic.** The paper's case study (METHOD.md §7; Jolani 2025, §4)
pools 15 CKD studies (4,774 patients) whose individual data are not public in one
place. :func:`ckd_like` generates a data set with the same study sizes and exactly the
same pattern of missing data (Table 4, :data:`TABLE4`), from a known model whose
parameters are near the paper's MLMI estimates (Table 5), so that an analysis can be
compared with the truth (:func:`ckd_truth`). Nothing in it is real patient data and
its estimates say nothing about smoking in CKD.

Columns (one row per patient)
-----------------------------
``study``          study 1..15 (int64), sizes of Table 4.
``smoking``        outcome, 0/1 (float64; NaN where missing).
``alcohol``        alcohol use, 0/1 (float64; NaN where missing).
``comorbidities``  number of comorbidities 0..4 (float64; NaN where missing).
``age``            years (float64, complete), auxiliary.
``sex``            1 = male, 0 = female (float64, complete), auxiliary.

Generating model (per study i; all draws from ``numpy.random.default_rng(seed)``)
---------------------------------------------------------------------------------
* Study effects: mean age ``mu_i ~ N(66, 4^2)``, male share
  ``logistic(0.3 + s_i)`` with ``s_i ~ N(0, 0.3^2)``, and ``(nu1_i, nu2_i) ~ N(0,
  0.2 I)`` on alcohol and comorbidities (as the simulation design's Lambda).
* ``age = mu_i + 10 z``, z standard normal, truncated to [25, 95] by redrawing.
* ``sex ~ Bernoulli(logistic(0.3 + s_i))``.
* ``alcohol ~ Bernoulli(logistic(-0.7 + nu1_i - 0.4 a + 0.9 sex))`` and
  ``comorbidities ~ Binomial(4, logistic(-0.4 + nu2_i + 0.35 a + 0.2 sex))``, with
  ``a = (age - 65) / 10``: age and sex predict both covariates, which is what makes
  them useful auxiliary variables in the imputation models.
* ``(u0_i, u1_i) ~ N(0, Omega)``, Omega = diag(1.14^2, 0.62^2) (correlation 0), and
  ``smoking ~ Bernoulli(logistic(a0 + a1 alcohol + a2 comorbidities + u0_i + u1_i
  alcohol))`` with (a0, a1, a2) = (-1.32, 0.68, -0.012). Smoking does not depend on
  age or sex given the covariates and the study, so the analysis model
  ``smoking ~ alcohol + comorbidities + (1 + alcohol | study)`` is correctly specified
  and its true parameters are exactly :func:`ckd_truth`. No study is redrawn (a small
  study may have no smokers), so nothing conditions the truth away.

Missing data (fixed counts, MAR)
--------------------------------
The number of missing values of each variable in each study is fixed:
``round(n_i * pct / 100)`` for Table 4's percentage ``pct`` (which reproduces the
table's rounded percentages exactly), every row where the table says 100
(systematically missing: the study never measured the variable). *Which* rows are
sporadically missing is random and depends on the always-observed age and sex only —
the mechanism is MAR, not MCAR: the k missing rows of a study are drawn without
replacement with weights ``logistic(logit(k / n_i) + b_age a + b_sex sex)``, with
(b_age, b_sex) = (1.0, 0.5) for alcohol (older patients and men more often lack it)
and (-0.8, 0.5) for smoking (younger patients and men). Smoking and alcohol are
chosen independently in the studies where both are sporadically missing (1 and 8), so
the number of complete cases varies a little between seeds. Because the missingness
depends on age and sex but smoking does not (given alcohol and comorbidities), a
complete-case analysis of the analysis model is unbiased here, only inefficient; the
gain from imputation is the information in the partly observed and systematically
missing studies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from .exceptions import InputError

#: variables of the data set, in column order after ``study``
VARIABLES = ("smoking", "alcohol", "comorbidities", "age", "sex")

# Table 4: study -> (n, % missing smoking, sex, age, alcohol, comorbidities);
# 100 = systematically missing.
_TABLE4 = (
    (1, 832, 1, 0, 0, 1, 0),
    (2, 533, 0, 0, 0, 26, 0),
    (3, 88, 0, 0, 0, 0, 0),
    (4, 1144, 0, 0, 0, 100, 0),
    (5, 551, 0, 0, 0, 100, 0),
    (6, 578, 0, 0, 0, 100, 0),
    (7, 116, 0, 0, 0, 100, 0),
    (8, 44, 39, 0, 0, 55, 0),
    (9, 73, 0, 0, 0, 5, 0),
    (10, 55, 0, 0, 0, 100, 0),
    (11, 27, 0, 0, 0, 100, 0),
    (12, 405, 0, 0, 0, 100, 0),
    (13, 224, 0, 0, 0, 0, 0),
    (14, 59, 0, 0, 0, 100, 100),
    (15, 45, 0, 0, 0, 100, 0),
)
_TABLE4_COLUMNS = ("n", "smoking", "sex", "age", "alcohol", "comorbidities")

#: Table 4 of the paper: study size ``n`` and % missing per variable (100 = the
#: variable is systematically missing in that study), indexed by study 1..15.
#: A copy for printing and comparison; the generator does not read it.
TABLE4 = pd.DataFrame(
    [row[1:] for row in _TABLE4],
    index=pd.Index([row[0] for row in _TABLE4], name="study"),
    columns=list(_TABLE4_COLUMNS),
).astype("int64")

#: fixed effects (a0, a1, a2) of the analysis model — Table 5, MLMI row
ALPHA = np.array([-1.32, 0.68, -0.012])
#: SDs (omega0, omega1) of the random intercept and random alcohol slope
OMEGA_SD = np.array([1.14, 0.62])
#: correlation of the random intercept and slope
RHO = 0.0
#: between-study covariance Omega of (u0, u1)
OMEGA = np.array([
    [OMEGA_SD[0] ** 2, RHO * OMEGA_SD[0] * OMEGA_SD[1]],
    [RHO * OMEGA_SD[0] * OMEGA_SD[1], OMEGA_SD[1] ** 2],
])
#: covariance of the study effects (nu1, nu2) on alcohol and comorbidities
LAMBDA = np.array([[0.2, 0.0], [0.0, 0.2]])

# covariate models (a = (age - AGE_CENTER) / AGE_SCALE)
AGE_CENTER, AGE_SCALE = 65.0, 10.0
_AGE_STUDY_MEAN, _AGE_STUDY_SD, _AGE_SD = 66.0, 4.0, 10.0
_AGE_RANGE = (25.0, 95.0)
_MALE_LOGIT, _MALE_STUDY_SD = 0.3, 0.3
_ALCOHOL = {"intercept": -0.7, "age": -0.4, "sex": 0.9}
_COMORB = {"intercept": -0.4, "age": 0.35, "sex": 0.2}
_N_COMORB = 4

#: MAR weights of sporadic missingness: variable -> (b_age, b_sex)
MAR_WEIGHTS = {"smoking": (-0.8, 0.5), "alcohol": (1.0, 0.5)}


def ckd_truth() -> dict[str, float]:
    """True values of the analysis model
    ``smoking ~ alcohol + comorbidities + (1 + alcohol | study)`` in :func:`ckd_like`:
    fixed effects a0, a1, a2 and the random-effect SDs omega0 (intercept) and omega1
    (alcohol slope). The random effects are uncorrelated (:data:`RHO` = 0)."""
    return {"a0": float(ALPHA[0]), "a1": float(ALPHA[1]), "a2": float(ALPHA[2]),
            "omega0": float(OMEGA_SD[0]), "omega1": float(OMEGA_SD[1])}


def missing_counts() -> pd.DataFrame:
    """Number of missing rows per study (index) and variable (columns) that
    :func:`ckd_like` produces: ``round(n * pct / 100)`` of Table 4."""
    n = TABLE4["n"].to_numpy()
    counts = {v: np.round(n * TABLE4[v].to_numpy() / 100).astype(np.int64)
              for v in ("smoking", "alcohol", "comorbidities", "age", "sex")}
    return pd.DataFrame(counts, index=TABLE4.index)[list(VARIABLES)]


def missingness_table(data: pd.DataFrame, cluster: str = "study") -> pd.DataFrame:
    """Table 4 computed from ``data``: study size ``n`` and % missing per variable,
    rounded to integers, in :data:`TABLE4`'s layout (compare with ``TABLE4``)."""
    cols = [c for c in _TABLE4_COLUMNS[1:] if c in data.columns]
    groups = data.groupby(cluster, sort=True)
    pct = (groups[cols].agg(lambda s: s.isna().mean()) * 100).round().astype("int64")
    pct.insert(0, "n", groups.size().astype("int64"))
    pct.index.name = cluster
    return pct


def ckd_like(seed: int = 2025, *, complete: bool = False) -> pd.DataFrame:
    """A synthetic CKD-like IPD meta-analysis with Table 4's sizes and missing data.

    Parameters
    ----------
    seed : seed of ``numpy.random.default_rng``; every draw derives from it, so the
        same seed gives the identical data set.
    complete : True returns the data before amputation (no missing values); its
        values are those of ``ckd_like(seed)`` wherever the latter is observed.

    Returns
    -------
    DataFrame with columns ``study`` (int64, 1..15), ``smoking``, ``alcohol``,
    ``comorbidities``, ``age``, ``sex`` (float64). See the module docstring for the
    generating model and the missing-data mechanism; the true parameters of the
    analysis model are :func:`ckd_truth`. The data are synthetic.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed={seed!r} must be an integer")
    rng = np.random.default_rng(seed)
    data = _generate(rng)
    if complete:
        return data
    return _ampute(data, rng)


def _generate(rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for study, n in zip(TABLE4.index.to_numpy(), _sizes(), strict=True):
        mu_age = _AGE_STUDY_MEAN + _AGE_STUDY_SD * rng.standard_normal()
        male_logit = _MALE_LOGIT + _MALE_STUDY_SD * rng.standard_normal()
        nu = rng.multivariate_normal(np.zeros(2), LAMBDA)
        u = rng.multivariate_normal(np.zeros(2), OMEGA)
        age = _truncated_age(rng, mu_age, n)
        sex = rng.binomial(1, expit(male_logit), n)
        a = (age - AGE_CENTER) / AGE_SCALE
        alcohol = rng.binomial(1, expit(_ALCOHOL["intercept"] + nu[0]
                                        + _ALCOHOL["age"] * a + _ALCOHOL["sex"] * sex))
        comorb = rng.binomial(_N_COMORB, expit(_COMORB["intercept"] + nu[1]
                                               + _COMORB["age"] * a + _COMORB["sex"] * sex))
        eta = ALPHA[0] + ALPHA[1] * alcohol + ALPHA[2] * comorb + u[0] + u[1] * alcohol
        smoking = rng.binomial(1, expit(eta))
        parts.append(pd.DataFrame({
            "study": np.full(n, study, dtype=np.int64),
            "smoking": smoking.astype(np.float64),
            "alcohol": alcohol.astype(np.float64),
            "comorbidities": comorb.astype(np.float64),
            "age": age,
            "sex": sex.astype(np.float64),
        }))
    return pd.concat(parts, ignore_index=True)


def _sizes() -> np.ndarray:
    return np.array([row[1] for row in _TABLE4], dtype=np.int64)


def _truncated_age(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    lo, hi = _AGE_RANGE
    age = mean + _AGE_SD * rng.standard_normal(n)
    bad = (age < lo) | (age > hi)
    while bad.any():  # redraw out-of-range ages (truncated normal)
        age[bad] = mean + _AGE_SD * rng.standard_normal(int(bad.sum()))
        bad = (age < lo) | (age > hi)
    return age


def _ampute(data: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = data.copy()
    counts = missing_counts()
    study = out["study"].to_numpy()
    a = (out["age"].to_numpy() - AGE_CENTER) / AGE_SCALE
    sex = out["sex"].to_numpy()
    for s in counts.index:
        rows = np.flatnonzero(study == s)
        n = rows.size
        for v in ("smoking", "alcohol", "comorbidities"):
            k = int(counts.loc[s, v])
            if k == 0:
                continue
            if k == n:  # systematically missing
                lost = rows
            else:  # sporadic, MAR given age and sex
                b_age, b_sex = MAR_WEIGHTS[v]
                w = expit(logit(k / n) + b_age * a[rows] + b_sex * sex[rows])
                lost = rng.choice(rows, size=k, replace=False, p=w / w.sum())
            out.iloc[lost, out.columns.get_loc(v)] = np.nan
    return out
