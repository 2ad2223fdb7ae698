"""The result of an imputation (mice's ``mids``): completed data sets, chains, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .setup import Plan


@dataclass
class Imputed:
    """m completed versions of a data set with missing values.

    Attributes
    ----------
    m : number of imputations (independent chains).
    maxit : iterations per chain.
    methods : imputation method per incomplete variable ("" = left missing,
        "~expression" = derived).
    types : the type of every variable (binary, ordinal, nominal, count, continuous).
    predictor_matrix : roles of the predictors of each imputed variable (mice's codes:
        -2 the study, 1 fixed effect, 2 fixed effect and random slope, 3 fixed effects
        of the variable and its study mean, 0 not used).
    excluded : columns left out of every model (identifiers, dates, row names,
        ``exclude=``, the ``by=`` column), with the reason.
    study_level : the study-level variables (one value per study).
    visit_sequence : order in which variables are imputed within an iteration.
    sampler : how random effects of sporadically missing studies were drawn.
    seed : the seed every random draw was derived from (drawn when none was given).
    imputations : per variable, an m × n_missing array of imputed values (0/1 for
        binary variables), in row order of the missing entries.
    chains : mean and SD of the imputed values of each variable per iteration and
        chain (long format) — for convergence (trace) plots.
    diagnostics : one row per univariate call (with ``by=``, a ``group`` column) —
        variable, iteration, chain, method,
        numbers of sporadic and systematic studies, sampler proposals, acceptances,
        acceptance rate, bound exceedances and fallbacks, whether Psi-hat had to be
        floored, whether the model fit converged or was singular, its warnings; the
        run's seed is in ``diagnostics.attrs["seed"]`` (and a column of the file
        ``mlmi impute`` writes).
    notes : things decided at set-up that a user should know (dummy coding, studies
        with one participant).
    """

    plan: Plan = field(repr=False)
    m: int
    maxit: int
    seed: int
    imputations: dict[str, np.ndarray] = field(repr=False)
    chains: pd.DataFrame = field(repr=False)
    diagnostics: pd.DataFrame = field(repr=False)
    #: the steps as typed records (mlmi.mice.diagnostics.StepRecord), one per row of
    #: ``diagnostics``: named counts and warnings with a kind
    records: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.diagnostics.attrs["seed"] = self.seed

    # ------------------------------------------------------------------ views
    @property
    def data(self) -> pd.DataFrame:
        """The incomplete data as given (never modified)."""
        return self.plan.data

    @property
    def cluster(self) -> str:
        return self.plan.cluster

    @property
    def methods(self) -> dict[str, str]:
        """Method per incomplete variable ("" = left missing; "~expression" = derived,
        mice's notation for passive imputation; "constant": observed with a single value,
        imputed with it)."""
        out = dict(self.plan.methods)
        out.update({d: f"~{e.text}" for d, e in self.plan.derived.items()})
        out.update(dict.fromkeys(self.plan.constants, "constant"))
        return out

    @property
    def excluded(self) -> dict[str, str]:
        """Columns left out of every model and kept as they are, with the reason."""
        return dict(self.plan.excluded)

    @property
    def study_level(self) -> list[str]:
        """Study-level variables (declared or detected: constant within studies)."""
        return list(self.plan.level2)

    @property
    def types(self) -> dict[str, str]:
        return {v: s.vtype for v, s in self.plan.variables.items()}

    @property
    def predictor_matrix(self) -> pd.DataFrame:
        return self.plan.predictor_matrix.copy()

    @property
    def visit_sequence(self) -> list[str]:
        return list(self.plan.visit_sequence)

    @property
    def sampler(self) -> str | dict[str, str]:
        """The random-effects sampler: one name, or per imputed variable where
        ``sampler=`` was a dict."""
        if len(set(self.plan.samplers.values()) | {self.plan.sampler}) > 1:
            return dict(self.plan.samplers)
        return self.plan.sampler

    @property
    def notes(self) -> list[str]:
        """Set-up information and warnings (e.g. dummy coding, one-participant studies)."""
        return list(self.plan.notes) + list(self.plan.warnings)

    def missingness(self) -> pd.DataFrame:
        """Per study and incomplete variable: number and share of missing values, and
        whether the variable is complete, sporadically or systematically missing there."""
        rows = []
        data, codes = self.plan.data, self.plan.codes
        sizes = np.bincount(codes, minlength=self.plan.labels.size)
        for var, miss in self.plan.missing.items():
            n_miss = np.bincount(codes[miss], minlength=self.plan.labels.size)
            for i, label in enumerate(self.plan.labels):
                status = ("systematic" if n_miss[i] == sizes[i] else
                          "sporadic" if n_miss[i] else "complete")
                rows.append({self.cluster: label, "variable": var, "n": int(sizes[i]),
                             "n_missing": int(n_miss[i]),
                             "pct_missing": 100.0 * n_miss[i] / sizes[i], "status": status})
        del data
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ completed data
    def complete(self, action: int | str = 1, include: bool = False
                 ) -> pd.DataFrame | list[pd.DataFrame]:
        """Completed data.

        ``action``: an imputation number 1..m (a DataFrame with the same index, columns
        and dtypes as the input); 0 — the incomplete data; ``"long"`` — all m stacked,
        with columns ``.imp`` (1..m) and ``.id`` (the row number 1..n, as mice's
        ``complete(imp, "long")``) first; ``"all"`` — a list of the m completed
        DataFrames. ``include=True`` (with ``"long"`` or ``"all"``) adds the incomplete
        data first, as ``.imp = 0`` — the layout ``mice::as.mids()`` reads.
        """
        if not isinstance(include, (bool, np.bool_)):
            raise InputError(f"include={include!r} must be True or False")
        if isinstance(action, str):
            first = 0 if include else 1
            if action == "long":
                parts = []
                ids = np.arange(1, len(self.plan.data) + 1)
                for i in range(first, self.m + 1):
                    d = self.complete(i)
                    d.insert(0, ".id", ids)
                    d.insert(0, ".imp", i)
                    parts.append(d.reset_index(drop=True))
                return pd.concat(parts, ignore_index=True)
            if action == "all":
                return [self.complete(i) for i in range(first, self.m + 1)]
            raise InputError(f"action={action!r}: use 1..m, 0, 'long' or 'all'")
        if isinstance(action, (bool, np.bool_)):
            raise InputError(f"action={action!r}: give an imputation number 1..{self.m}")
        if not isinstance(action, (int, np.integer)) or not 0 <= action <= self.m:
            raise InputError(f"action={action!r}: imputation numbers run from 1 to {self.m}")
        out = self.plan.data.copy()
        if action == 0:
            return out
        for var, values in self.imputations.items():
            miss = self.plan.missing[var]
            out[var] = _restore(out[var], miss, values[action - 1], self.plan.variables[var])
        for var, value in self.plan.constants.items():
            # a variable observed with one value only: its missing entries take that value
            miss = self.plan.missing[var]
            filled = out[var].astype(object)
            filled.iloc[np.flatnonzero(miss)] = value
            out[var] = filled.astype(out[var].dtype)
        return out

    # ------------------------------------------------------------------ analysis
    def analyze(self, formula, family: str = "gaussian", *, dfcom: float | None = None,
                **kwargs):
        """Fit the analysis model to each completed data set.

        ``formula`` a string: the mixed model (lme4 syntax), fitted by
        :func:`mlmi.glmm.fit_glmm` (extra keyword arguments go there); returns a
        :class:`~mlmi.analysis.MultipleFits` whose ``pool()`` combines the fixed effects
        by Rubin's rules and ``pool_random()`` summarises the random-effect SDs.

        ``formula`` a function: any analysis model. ``func(completed_frame)`` returns a
        fitted result with ``params`` and ``cov_params()`` (statsmodels), one with
        ``params_`` and ``variance_matrix_`` (lifelines), or a pair (estimates,
        covariance); returns a :class:`~mlmi.analysis.MultipleResults` whose ``pool()``
        applies Rubin's rules. ``dfcom``: the complete-data degrees of freedom (default:
        the results' ``df_resid`` if they have one, else infinite).
        """
        datasets = [self.complete(i) for i in range(1, self.m + 1)]
        if callable(formula):
            from ..analysis import analyze_function

            if kwargs:
                raise InputError(f"analyze(func) takes no model arguments; got "
                                 f"{sorted(kwargs)}")
            return analyze_function(datasets, formula, dfcom=dfcom)
        from ..analysis import analyze_completed

        if dfcom is not None:
            raise InputError("dfcom= applies to analyze(func); the mixed-model path uses "
                             "n - p")
        return analyze_completed(datasets, formula, family, **kwargs)

    # ------------------------------------------------------------------ reporting
    def out_of_range(self) -> pd.DataFrame:
        """Per imputed count or continuous variable: its observed range, the number of
        imputed values (over all m imputations, as written to the completed data — counts
        rounded) below and above it, and their share. A model for a variable that is not
        bounded (a normal model for a positive biomarker, a Poisson model for a bounded
        score) shows itself here; ``limits=`` or a donor method (pmm, 2l.pmm) keeps the
        values inside. Binary, ordinal and nominal variables are never out of range."""
        from .sampler import get_values

        rows = []
        for var in self.plan.imputed_variables:
            spec = self.plan.variables[var]
            if not spec.kind.bounded or var not in self.imputations:
                continue
            miss = self.plan.missing[var]
            obs = get_values(self.plan, self.plan.work, var)[~miss]
            imp = spec.kind.imputed_scale(np.asarray(self.imputations[var], dtype=float))
            lo, hi = float(np.min(obs)), float(np.max(obs))
            below, above = int(np.sum(imp < lo)), int(np.sum(imp > hi))
            rows.append({"variable": var, "observed_min": lo, "observed_max": hi,
                         "imputed_min": float(np.min(imp)) if imp.size else np.nan,
                         "imputed_max": float(np.max(imp)) if imp.size else np.nan,
                         "n_imputed": int(imp.size), "below": below, "above": above,
                         "out_of_range": below + above,
                         "out_of_range_pct": 100.0 * (below + above) / max(imp.size, 1)})
        columns = ["variable", "observed_min", "observed_max", "imputed_min",
                   "imputed_max", "n_imputed", "below", "above", "out_of_range",
                   "out_of_range_pct"]
        return _full_table(pd.DataFrame(rows, columns=columns).set_index("variable"))

    def summary(self) -> pd.DataFrame:
        """Per variable: type, method and why it has that type (``type_reason``: the
        inference rule that decided it, or ``types=`` / the method that set it); for
        imputed variables also the sporadic/systematic studies, the sampler and Psi* draw,
        the limits, the imputed values outside the observed range (``out_of_range``, its
        share in per cent; see :meth:`out_of_range`), and the totals of sampler
        proposals, acceptances, fallbacks, truncated draws and fit warnings. Complete
        predictors come last, with an empty method."""
        d = self.diagnostics
        ranges = self.out_of_range()
        rows = []
        for var in self.plan.imputed_variables:
            sub = d[d["variable"] == var] if "variable" in d else d
            st = self.plan.status[var]
            row = {"variable": var, "type": self.plan.variables[var].vtype,
                   "method": self.plan.methods[var],
                   "type_reason": self.plan.variables[var].reason,
                   "n_missing": int(self.plan.missing[var].sum()),
                   "sporadic_studies": int(np.sum(st == 1)),
                   "systematic_studies": int(np.sum(st == 2))}
            if var in self.plan.samplers:
                row["sampler"] = self.plan.samplers[var]
                row["psi_draw"] = self.plan.psi_draws[var]
            if var in self.plan.limits:
                row["limits"] = self.plan.limits[var]
            if var in ranges.index:
                row["out_of_range"] = int(ranges.loc[var, "out_of_range"])
                row["out_of_range_pct"] = float(ranges.loc[var, "out_of_range_pct"])
            for key in ("proposals", "accepted", "bound_exceeded", "fallbacks",
                        "mode_failures", "psi_floored", "psi_fallbacks",
                        "psi_auto_ml_normal", "clipped",
                        "truncated", "truncated_rows", "outside_limits",
                        "dropped_studies", "n_fit_warnings"):
                if key in sub:
                    total = float(sub[key].fillna(0).sum())
                    # "truncated" is an expected number (a sum of probabilities)
                    row[key] = int(total) if total == round(total) else round(total, 2)
            if "proposals" in sub and row.get("proposals"):
                row["acceptance_rate"] = row["accepted"] / row["proposals"]
            if "fit_converged" in sub:
                row["fits_not_converged"] = int((~sub["fit_converged"].astype(bool)).sum())
            rows.append(row)
        for var, value in self.plan.constants.items():
            rows.append({"variable": var, "type": self.plan.variables[var].vtype,
                         "method": f"constant ({_short(value)})",
                         "type_reason": self.plan.variables[var].reason,
                         "n_missing": int(self.plan.missing[var].sum())})
        for var, v in self.plan.variables.items():
            if var not in self.plan.methods and var not in self.plan.constants \
                    and var not in self.plan.derived:
                rows.append({"variable": var, "type": v.vtype,
                             "method": "" if not v.n_missing else "(left missing)",
                             "type_reason": v.reason, "n_missing": v.n_missing})
        columns = ["variable", "type", "method", "type_reason", "n_missing",
                   "sporadic_studies", "systematic_studies"]
        return _full_table(pd.DataFrame(rows, columns=None if rows else columns)
                           .set_index("variable"))

    def __repr__(self) -> str:
        lines = [f"Imputed(m={self.m}, maxit={self.maxit}, cluster={self.cluster!r}, "
                 f"sampler={self.sampler!r}, seed={self.seed})"]
        for var in self.plan.imputed_variables:
            st = self.plan.status[var]
            lines.append(f"  {var:<16} {self.plan.variables[var].vtype:<11} "
                         f"{self.plan.methods[var]:<10} missing {int(self.plan.missing[var].sum())}"
                         f" (sporadic in {int(np.sum(st == 1))}, systematic in "
                         f"{int(np.sum(st == 2))} studies)"
                         + (", study-level" if var in self.plan.level2 else ""))
            lines.append(f"  {'':<16} type: {self.plan.variables[var].reason}")
            extra = []
            if var in self.plan.limits:
                lo, hi = self.plan.limits[var]
                extra.append(f"limits {lo:g} to {hi:g}")
            if self.plan.samplers.get(var, self.plan.sampler) != self.plan.sampler:
                extra.append(f"sampler {self.plan.samplers[var]!r}")
            if self.plan.psi_draws.get(var, self.plan.psi_draw) != self.plan.psi_draw:
                extra.append(f"psi_draw {self.plan.psi_draws[var]!r}")
            if extra:
                lines.append(f"  {'':<16} " + ", ".join(extra))
        for var, expr in self.plan.derived.items():
            lines.append(f"  {var:<16} derived     ~{expr.text}")
        if self.plan.by:
            n_groups = self.diagnostics["group"].nunique() if "group" in self.diagnostics \
                else 0
            lines.append(f"  imputed separately within the {n_groups} levels of "
                         f"{self.plan.by!r}")
        if self.plan.excluded:
            lines.append("  left out of the models: " + ", ".join(
                f"{c} ({why.split(' (')[0].split(';')[0]})"
                for c, why in self.plan.excluded.items()))
        for var, value in self.plan.constants.items():
            lines.append(f"  {var:<16} {'constant':<22} missing "
                         f"{int(self.plan.missing[var].sum())} (imputed with its only observed "
                         f"value {_short(value)})")
        complete = [(var, v) for var, v in self.plan.variables.items()
                    if var not in self.plan.methods and var not in self.plan.constants
                    and var not in self.plan.derived]
        if complete:
            lines.append("  predictors:")
            lines.extend(f"  {var:<16} {v.vtype:<11} {v.reason}"
                         + (f" ({v.n_missing} missing, left missing)" if v.n_missing else "")
                         for var, v in complete)
        if not self.plan.imputed_variables and not self.plan.constants \
                and not self.plan.derived:
            lines.append("  no missing values: every completed data set equals the data")
        return "\n".join(lines)


def _short(value) -> str:
    return str(value)[:20]


def _full_table(frame: pd.DataFrame) -> pd.DataFrame:
    from ..pool import FullTable

    return FullTable(frame)


def _restore(col: pd.Series, miss: np.ndarray, values: np.ndarray, spec) -> pd.Series:
    """Put imputed values into a copy of ``col`` in the column's own dtype and coding."""
    return spec.kind.decode(col, miss, values, spec.levels)
