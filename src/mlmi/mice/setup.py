"""Everything decided before the first draw: types, methods, predictors, visit order.

All user input is validated here, once, with messages that name the argument and the
offending value; the chained-equation loop then works on arrays only.

Variable types — binary, ordinal, nominal (alias categorical), count, continuous — are
inferred from the observed values by the rule stated in :mod:`mlmi.vartypes` (where
everything that depends on a type lives); ``types=`` overrides them, and a method given
for a variable sets its type where they disagree (``method={"age": "2l.norm"}`` makes an
integer column continuous). Ordinal and nominal variables enter the numeric working
matrix as dummy columns ``<var><level>`` (treatment contrasts, first level the reference,
as in R) and are imputed as category codes.

Columns that are not data (identifiers, dates, row names) and ``exclude=`` columns stay
out of every model; study-level variables, derived variables and study means as
predictors (predictor-matrix code 3) are described in :mod:`mlmi.mice.columns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import vartypes
from ..exceptions import InputError, ModelError
from ..methods import (
    STRATEGIES,
    STUDY_LEVEL,
    SYSTEMATIC,
    available_methods,
    get_method,
)
from ..methods._multilevel import PSI_DRAWS
from ..methods.base import DEFAULT_PSI_DRAW, study_status
from .columns import MANY_LEVELS, Expression, not_data, study_level_violations

MAX_COUNT_LEVELS = vartypes.MAX_COUNT_LEVELS
TYPES = vartypes.TYPES
SAMPLERS = ("exact", "prior-ar", "laplace", "marginal")


@dataclass
class Variable:
    """A column of the data as the imputation sees it.

    ``levels``: for binary variables the two original values (coded 0 and 1); for
    ordinal and nominal ones all observed levels in code order (the first is the
    reference). ``cols``: its columns in the numeric working matrix (one, or the dummies
    of an ordinal or nominal variable). ``reason``: why it has its type.
    """

    name: str
    vtype: str
    levels: list | None
    cols: list[int]
    col_names: list[str]
    n_missing: int
    reason: str = ""

    @property
    def kind(self) -> vartypes.VarType:
        """The registered type (encode, decode, default methods, plot kinds)."""
        return vartypes.REGISTRY[self.vtype]


@dataclass
class Plan:
    """The validated set-up of an imputation (see :func:`make_plan`)."""

    data: pd.DataFrame
    cluster: str
    codes: np.ndarray
    labels: np.ndarray
    variables: dict[str, Variable]
    methods: dict[str, str]
    predictor_matrix: pd.DataFrame
    visit_sequence: list[str]
    work: np.ndarray  # numeric working matrix, NaN where missing
    work_names: list[str]
    missing: dict[str, np.ndarray]
    status: dict[str, np.ndarray]
    sampler: str
    notes: list[str] = field(default_factory=list)  # information (e.g. dummy coding)
    warnings: list[str] = field(default_factory=list)  # also emitted as ImputationWarning
    #: columns kept out of every model (and untouched in the output), with the reason
    excluded: dict[str, str] = field(default_factory=dict)
    #: study-level variables (declared or detected: constant within studies)
    level2: list[str] = field(default_factory=list)
    #: derived (passive) variables, in the order they are computed
    derived: dict[str, Expression] = field(default_factory=dict)
    #: the grouping column of imputation by group (``by=``), if any
    by: str | None = None
    psi_draw: str = DEFAULT_PSI_DRAW
    #: incomplete variables observed with a single value: imputed with that value, not
    #: modelled (a model of a constant has nothing to estimate) and not a predictor
    constants: dict = field(default_factory=dict)
    #: per imputed variable: the random-effects sampler and the Psi* draw it uses
    samplers: dict[str, str] = field(default_factory=dict)
    psi_draws: dict[str, str] = field(default_factory=dict)
    #: per variable: (lower, upper) bounds of its possible values (``limits=``)
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def imputed_variables(self) -> list[str]:
        return [v for v, m in self.methods.items() if m]

    @property
    def output_variables(self) -> list[str]:
        """Variables with values filled in by a chain: the imputed and the derived ones."""
        return [*self.imputed_variables, *self.derived]

    def mean_predictors(self, target: str) -> tuple[list[int], list[str]]:
        """Working-matrix columns whose study means are fixed predictors of ``target``
        (predictor-matrix code 3), and the names of those means."""
        row = self.predictor_matrix.loc[target]
        cols, names = [], []
        for var, code in row.items():
            if code == 3:
                v = self.variables[var]
                cols.extend(v.cols)
                names.extend(f"mean({n})" for n in v.col_names)
        return cols, names

    def dependents(self, var: str) -> list[str]:
        """Derived variables to recompute after ``var`` changes, in computing order."""
        changed, out = {var}, []
        for name, expr in self.derived.items():
            if changed & set(expr.inputs):
                out.append(name)
                changed.add(name)
        return out

    def predictors(self, target: str) -> tuple[list[int], list[str], np.ndarray]:
        """Working-matrix columns, their names and mice roles (1 or 2) of the
        predictors of ``target``."""
        row = self.predictor_matrix.loc[target]
        cols, names, roles = [], [], []
        for var, code in row.items():
            # the study column is not a predictor column: multilevel methods see it as
            # the cluster, single-level ones through Problem.cluster_role
            if var == self.cluster:
                continue
            if code in (1, 2, 3):  # 3: the variable and (mean_predictors) its study mean
                v = self.variables[var]
                cols.extend(v.cols)
                names.extend(v.col_names)
                roles.extend([2 if code == 2 else 1] * len(v.cols))
        return cols, names, np.array(roles, dtype=np.int64)


# ------------------------------------------------------------------------ types
def infer_type(col: pd.Series) -> tuple[str, list | None]:
    """Type and levels of a column from its observed values (the rule:
    :mod:`mlmi.vartypes`)."""
    if not pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(
            col.dtype, pd.CategoricalDtype) and not pd.api.types.is_bool_dtype(col.dtype):
        _check_text_codes(col, col.dropna())
    found = vartypes.infer(col)
    return found.vtype, found.levels


def _method_of(method, var: str, n_missing: int) -> str | None:
    """The method the user named for ``var`` (not a strategy), or None."""
    name = method.get(var) if isinstance(method, dict) else method if n_missing else None
    if not isinstance(name, str) or not name or name in STRATEGIES:
        return None
    return name


def _decide_type(col: pd.Series, declared: str | None, method: str | None
                 ) -> tuple[str, list | None, str, str | None]:
    """Type, levels, the reason for the type and an inference warning (or None):
    ``types=`` first, then a method that imputes other types than the inferred one
    (the first of them the values allow, in the order binary, ordinal, nominal, count,
    continuous) or whose first type is continuous for an inferred count, else the
    inference."""
    if not pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(
            col.dtype, pd.CategoricalDtype) and not pd.api.types.is_bool_dtype(col.dtype):
        _check_text_codes(col, col.dropna())
    found = vartypes.infer(col)
    if declared is not None:
        out = vartypes.coerce(col, declared, found, f"types={{{col.name!r}: {declared!r}}}")
        return out.vtype, out.levels, out.reason, None
    if method is not None:
        info = get_method(method)
        if found.vtype not in info.types and found.vtype != "binary":
            errors = []
            for t in vartypes.TYPES:
                if t not in info.types:
                    continue
                try:
                    out = vartypes.coerce(col, t, found, f"set by method {method!r}")
                except InputError as exc:
                    errors.append(str(exc))
                    continue
                return out.vtype, out.levels, f"{out.reason}; inferred {found.vtype}", None
            raise InputError(
                f"method {method!r} imputes {' or '.join(info.types)} variables, but "
                f"{col.name!r} is {found.vtype} ({found.reason})"
                + (f": {errors[-1]}" if errors else ""))
        if found.vtype == "count" and info.types[0] == "continuous" and not info.donor:
            # a method for continuous variables first (2l.norm, norm) named for an
            # integer column: its draws are the model's, not rounded as a count (donor
            # methods impute observed values: the count stays a count)
            return ("continuous", None, f"set by method {method!r}, a model of continuous "
                    f"variables; inferred count ({found.reason})", None)
        return found.vtype, found.levels, f"{found.reason}; method {method!r}", None
    return found.vtype, found.levels, found.reason, found.warning


def _check_text_codes(col: pd.Series, obs: pd.Series) -> None:
    """A column of numbers with a few text entries ('.', 'NA ', '-') is almost always a
    number column with a missing-value code: say so rather than treat it as text."""
    if obs.empty or not any(isinstance(v, str) for v in obs.iloc[:1000]):
        return
    numbers = pd.to_numeric(obs, errors="coerce")
    text = obs[numbers.isna()]
    codes = sorted(pd.unique(text))
    symbols = all(not any(ch.isalpha() for ch in str(c)) for c in codes)
    if numbers.notna().sum() >= 2 and 0 < len(codes) <= 3 and (
            symbols or len(text) < len(obs) / 2):
        raise InputError(
            f"column {col.name!r} holds numbers and the text value(s) "
            f"{[_short(c) for c in codes]} ({len(text)} cell(s)); if they mean missing, "
            f"replace them by NaN (e.g. data.replace({codes[0]!r}, np.nan)) — mlmi impute "
            "reads '.' as missing and takes other codes with --na-values"
        )


def _short(v) -> str:
    return str(v)[:20]


# ------------------------------------------------------------------------ plan
def make_plan(
    data: pd.DataFrame,
    cluster: str,
    *,
    method=None,
    random: dict | None = None,
    predictor_matrix: pd.DataFrame | None = None,
    visit_sequence: list[str] | None = None,
    sampler: str | dict = "exact",
    types: dict | None = None,
    level: dict | None = None,
    derived: dict | None = None,
    exclude: list[str] | None = None,
    fixed: Plan | None = None,
    psi_draw: str | dict = DEFAULT_PSI_DRAW,
    limits: dict | None = None,
) -> Plan:
    """Validate the arguments of :func:`mlmi.impute` and build the imputation plan.

    ``fixed``: a plan of the whole data whose column decisions (types and levels,
    exclusions, study-level variables) this plan of a subset (one group of ``by=``) keeps.
    """
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if data.columns.duplicated().any():
        dup = data.columns[data.columns.duplicated()].tolist()
        raise InputError(f"data has duplicated column names {dup}")
    if isinstance(cluster, (list, tuple, set, dict, pd.Index, pd.Series, np.ndarray)):
        raise InputError(f"cluster={cluster!r} must be the name of one column (the study "
                         "column), not a list")
    try:
        known = cluster in data.columns
    except TypeError:
        known = False
    if not known:
        import difflib

        lower = {str(c).lower(): str(c) for c in data.columns}
        close = ([lower[str(cluster).lower()]] if str(cluster).lower() in lower else
                 difflib.get_close_matches(str(cluster), [str(c) for c in data.columns], n=1))
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if len(data.columns) == 1 and any(s in str(data.columns[0]) for s in ";\t|"):
            hint = ("; the data has one column whose name contains separators — was the "
                    "file read with the wrong separator (mlmi impute: --sep)?")
        raise InputError(
            f"cluster={cluster!r} is not a column of data (columns: "
            f"{list(data.columns)[:20]}){hint}"
        )
    if len(data) == 0:
        raise InputError("data has no rows")
    sampler_default = _check_choice("sampler", sampler, SAMPLERS, "exact")
    psi_default = _check_choice("psi_draw", psi_draw, PSI_DRAWS, DEFAULT_PSI_DRAW)
    notes: list[str] = []
    warns: list[str] = []
    cl = data[cluster]
    if cl.isna().any():
        raise InputError(
            f"the cluster column {cluster!r} has {int(cl.isna().sum())} missing value(s); "
            "every participant must belong to a study"
        )
    codes, labels = pd.factorize(cl, sort=True)
    codes = codes.astype(np.int64)
    labels = np.asarray(labels)
    if labels.size < 2:
        raise InputError(
            f"the cluster column {cluster!r} has {labels.size} study; multilevel imputation "
            "needs at least 2"
        )
    sizes = np.bincount(codes, minlength=labels.size)
    singles = labels[sizes == 1]
    if singles.size:
        warns.append(
            f"{singles.size} stud{'y has' if singles.size == 1 else 'ies have'} a single "
            f"participant ({', '.join(map(str, singles[:10]))}): their random effects are "
            "identified only through the between-study distribution"
        )

    if types is not None and not isinstance(types, dict):
        raise InputError(f"types={types!r} must be a dict variable -> type")
    types = dict(types or {})
    for var, t in types.items():
        types[var] = vartypes.canonical(t, f"types[{var!r}]")
    _check_names("types", types, [c for c in data.columns if c != cluster], cluster)
    derived_exprs = _parse_derived(derived, data, cluster)
    if any(d not in data.columns for d in derived_exprs):  # new columns, computed
        data = data.copy()
        for d in derived_exprs:
            if d not in data.columns:
                data[d] = np.nan
    excluded = _excluded_columns(data, cluster, exclude, types, derived_exprs, fixed)
    for col, why in excluded.items():
        notes.append(f"column {col!r} left out of every model and kept as it is: {why}")
    columns = [c for c in data.columns if c != cluster and c not in excluded]
    for arg, mapping in (("method", method), ("level", level), ("random", random)):
        for key in (mapping if isinstance(mapping, dict) else {}):
            if key in excluded and not (fixed is not None and key == fixed.by):
                raise InputError(
                    f"{arg}[{key!r}]: {key!r} is left out of the models ({excluded[key]})")
    for d, expr in derived_exprs.items():
        for name in expr.inputs:
            if name not in columns and name not in derived_exprs:
                raise InputError(
                    f"derived[{d!r}] = {expr.text!r} uses {name!r}, which is "
                    + ("excluded from the models" if name in excluded else
                       "the cluster column" if name == cluster else "not a column of data")
                )
    if fixed is not None:
        types = {c: fixed.variables[c].vtype for c in columns if c in fixed.variables}

    # types and the numeric working matrix
    variables: dict[str, Variable] = {}
    doubts: dict[str, str] = {}  # inference not sure: warned if the variable is imputed
    blocks, work_names = [], []
    for name in columns:
        col = data[name]
        n_missing = int(col.isna().sum())
        if n_missing == len(col) and name not in derived_exprs:
            raise InputError(
                f"variable {name!r} is missing in all {len(col)} rows; there is nothing to "
                "impute it from — drop the column"
            )
        if name in derived_exprs:
            if not pd.api.types.is_numeric_dtype(col.dtype) and col.notna().any():
                raise InputError(f"derived variable {name!r} has non-numeric values "
                                 f"(dtype {col.dtype})")
            vtype, levels, reason = "continuous", None, "derived (computed from numbers)"
        elif fixed is not None and name in fixed.variables:
            kept = fixed.variables[name]
            vtype, levels, reason = kept.vtype, kept.levels, kept.reason
        else:
            vtype, levels, reason, warning = _decide_type(col, types.get(name),
                                                          _method_of(method, name, n_missing))
            if warning is not None and n_missing:
                doubts[name] = warning
        block, names = _encode(col, vtype, levels)
        start = sum(b.shape[1] for b in blocks)
        variables[name] = Variable(name, vtype, levels, list(range(start, start + len(names))),
                                   names, n_missing, reason)
        blocks.append(block)
        work_names.extend(names)
    work = np.column_stack(blocks) if blocks else np.empty((len(data), 0))
    for name, v in variables.items():
        if v.kind.categorical and len(v.levels) > MANY_LEVELS:
            warns.append(
                f"{v.vtype} variable {name!r} has {len(v.levels)} levels: "
                f"{len(v.cols)} dummy columns in every imputation model — is it an "
                f"identifier? Leave it out with exclude=[{name!r}], or group its levels"
            )
        elif v.kind.categorical and v.n_missing == 0:
            notes.append(
                f"{v.vtype} predictor {name!r} enters the imputation models as "
                f"{len(v.cols)} dummy column(s) {v.col_names} (reference level "
                f"{_short(v.levels[0])!r})"
            )
    for name, expr in derived_exprs.items():
        for inp in expr.inputs:
            if inp in variables and variables[inp].kind.categorical:
                raise InputError(f"derived[{name!r}] uses the {variables[inp].vtype} variable "
                                 f"{inp!r}; "
                                 "use its dummy coding in a variable of its own")

    constants = _constants(data, variables, columns, derived_exprs, method, fixed, notes)
    for name in constants:
        for c in variables[name].cols:
            seen = work[~np.isnan(work[:, c]), c]
            if seen.size:
                work[np.isnan(work[:, c]), c] = seen[0]
    level2 = _study_level(data, codes, labels.size, variables,
                          [c for c in columns if c not in constants], level, derived_exprs,
                          fixed, cluster)
    incomplete = [c for c in columns if variables[c].n_missing > 0 and c not in derived_exprs
                  and c not in constants]
    methods = _assign_methods(method, variables, incomplete, cluster, data, level2, level,
                              warns)
    for name in constants:
        methods.pop(name, None)
    for name, warning in doubts.items():
        # not sure of the type: warned unless imputed under limits the user gave
        if methods.get(name) and not (isinstance(limits, dict) and name in limits):
            warns.append(warning)
    pm = _predictor_matrix(predictor_matrix, random, variables, methods, columns, cluster,
                           derived_exprs, level2, constants)
    visit = _visit_sequence(visit_sequence, methods, columns)
    for name, expr in derived_exprs.items():
        for inp in expr.inputs:
            if inp in variables and variables[inp].n_missing and inp not in derived_exprs \
                    and not methods.get(inp):
                raise InputError(f"derived[{name!r}] uses {inp!r}, which is incomplete and "
                                 "not imputed")
        notes.append(f"derived variable {name!r} = {expr.text}: recomputed whenever "
                     f"{', '.join(map(repr, expr.inputs))} change(s); observed values kept; "
                     "not a predictor of its inputs")
    for name in level2:
        if methods.get(name):
            notes.append(f"{name!r} is study-level: imputed once per study by "
                         f"{methods[name]!r} and copied to the members")

    missing = {v: data[v].isna().to_numpy() for v in [*incomplete, *derived_exprs,
                                                       *constants]}
    status = {v: study_status(~missing[v], codes, labels.size) for v in missing}
    samplers = _per_variable("sampler", sampler, sampler_default, methods, columns, cluster)
    psi_draws = _per_variable("psi_draw", psi_draw, psi_default, methods, columns, cluster)
    bounds = _limits(limits, variables, data, methods, columns, cluster)
    plan = Plan(data, cluster, codes, labels, variables, methods, pm, visit, work, work_names,
                missing, status, sampler_default, notes, warns, excluded, level2,
                derived_exprs, psi_draw=psi_default, constants=constants, samplers=samplers,
                psi_draws=psi_draws, limits=bounds)
    _check_identifiable(plan)
    warns.extend(few_studies_warnings(plan))
    _compute_derived(plan, plan.work, list(derived_exprs))
    return plan


def _check_choice(arg: str, value, allowed, default: str) -> str:
    """A choice given for every variable (a name) or per variable (a dict variable ->
    name, the others getting ``default``): the values checked; the default returned."""
    if isinstance(value, dict):
        for var, v in value.items():
            if not isinstance(v, str) or v not in allowed:
                raise InputError(f"{arg}[{var!r}] = {v!r}: use one of {list(allowed)}")
        return default
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{arg}={value!r}: use one of {list(allowed)}, or a dict variable "
                         f"-> one of them")
    return value


def _per_variable(arg: str, value, default: str, methods: dict[str, str], columns,
                  cluster) -> dict[str, str]:
    """The choice of every imputed variable (``sampler=`` / ``psi_draw=``); a dict may
    name only variables whose method draws random effects (multilevel, participant
    level)."""
    imputed = [t for t, m in methods.items() if m]
    if not isinstance(value, dict):
        return dict.fromkeys(imputed, value)
    _check_names(arg, value, columns, cluster)
    for var, v in value.items():
        if not methods.get(var):
            raise InputError(f"{arg}[{var!r}] = {v!r}: {var!r} is not imputed (it has no "
                             "missing values, or no method)")
        info = get_method(methods[var])
        if not info.multilevel or info.level == 2:
            raise InputError(
                f"{arg}[{var!r}] = {v!r}: {var!r} is imputed by {info.name!r}, which draws "
                "no random effects of studies (a single-level or study-level method)")
    return {t: value.get(t, default) for t in imputed}


def _limits(limits, variables: dict[str, Variable], data: pd.DataFrame,
            methods: dict[str, str], columns, cluster) -> dict[str, tuple[float, float]]:
    """``limits=``: bounds of the possible values of counts and continuous variables,
    checked (names, two numbers lower < upper, every observed value inside)."""
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise InputError(f"limits={limits!r} must be a dict variable -> (lower, upper), e.g. "
                         "{'comorbidities': (0, 4)}")
    _check_names("limits", limits, columns, cluster)
    out: dict[str, tuple[float, float]] = {}
    for var, lim in limits.items():
        v = variables[var]
        if not v.kind.bounded:
            raise InputError(f"limits[{var!r}] = {lim!r}: {var!r} is {v.vtype}; limits bound "
                             "count and continuous variables (categories are never out of "
                             "range)")
        if not methods.get(var):
            raise InputError(f"limits[{var!r}] = {lim!r}: {var!r} is not imputed (it has no "
                             "missing values, or no method)")
        if isinstance(lim, (str, bytes)) or not hasattr(lim, "__len__") or len(lim) != 2:
            raise InputError(f"limits[{var!r}] = {lim!r}: give two numbers (lower, upper); "
                             "None for no bound on one side")
        bounds = []
        for side, b, inf in (("lower", lim[0], -np.inf), ("upper", lim[1], np.inf)):
            if b is None:
                bounds.append(inf)
                continue
            if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, float, np.number)) \
                    or np.isnan(b):
                raise InputError(f"limits[{var!r}] = {lim!r}: the {side} bound {b!r} is not "
                                 "a number")
            bounds.append(float(b))
        lo, hi = bounds
        if not lo < hi:
            raise InputError(f"limits[{var!r}] = {lim!r}: the lower bound must be below the "
                             "upper bound")
        x = data[var].dropna().to_numpy(dtype=float)
        outside = x[(x < lo) | (x > hi)]
        if outside.size:
            raise InputError(
                f"limits[{var!r}] = {lim!r}, but {outside.size} observed value(s) of {var!r} "
                f"lie outside (e.g. {np.unique(outside)[:5].tolist()}; observed range "
                f"{x.min():g} to {x.max():g}); observed values are never changed — widen the "
                "limits")
        out[var] = (lo, hi)
    return out


def _constants(data, variables, columns, derived, method, fixed, notes) -> dict:
    """Incomplete variables observed with a single value (whole data; a group of by=
    keeps the whole data's decision)."""
    if fixed is not None:
        return {c: v for c, v in fixed.constants.items() if c in columns}
    out = {}
    for name in columns:
        v = variables[name]
        if name in derived or not v.n_missing:
            continue
        obs = data[name].dropna()
        if obs.nunique() != 1:
            continue
        if isinstance(method, dict) and name in method:
            if method[name] == "":
                continue  # left missing on purpose
            raise InputError(
                f"method[{name!r}] = {method[name]!r}, but {name!r} has a single observed "
                f"value ({_short(obs.iloc[0])!r}): it is imputed with that value; drop "
                f"method[{name!r}]"
            )
        out[name] = obs.iloc[0]
        notes.append(
            f"{name!r} has {v.n_missing} missing value(s) and one observed value "
            f"({_short(obs.iloc[0])!r}): imputed with it (no model; it is not used as a "
            "predictor, as a constant carries no information)"
        )
    return out


def _compute_derived(plan: Plan, work: np.ndarray, names: list[str]) -> None:
    """Recompute the derived variables ``names`` (in order) at their missing rows from
    the current values of their inputs in ``work``; observed values are kept."""
    for name in names:
        expr = plan.derived[name]
        rows = plan.missing[name]
        inputs = {v: work[rows, plan.variables[v].cols[0]] for v in expr.inputs}
        work[rows, plan.variables[name].cols[0]] = expr.evaluate(inputs)


def _parse_derived(derived, data: pd.DataFrame, cluster: str) -> dict[str, Expression]:
    if derived is None:
        return {}
    if not isinstance(derived, dict):
        raise InputError(f"derived must be a dict name -> expression, not "
                         f"{type(derived).__name__}")
    out: dict[str, Expression] = {}
    for name, text in derived.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"derived: {name!r} is not a column name")
        if name == cluster:
            raise InputError(f"derived[{name!r}]: the cluster column cannot be derived")
        expr = Expression.parse(name, text)
        if name in expr.inputs:
            raise InputError(f"derived[{name!r}] = {text!r} uses {name!r} itself")
        for inp in expr.inputs:
            if inp in derived and inp not in out:
                raise InputError(f"derived[{name!r}] uses the derived variable {inp!r}, "
                                 "which must be defined before it")
        out[name] = expr
    return out


def _excluded_columns(data, cluster, exclude, types, derived, fixed) -> dict[str, str]:
    """Columns kept out of every model: ``exclude=`` and columns that are not data."""
    if fixed is not None:
        return {c: why for c, why in fixed.excluded.items() if c in data.columns}
    if exclude is None:
        exclude = []
    if isinstance(exclude, str):
        exclude = [exclude]
    out: dict[str, str] = {}
    for col in exclude:
        if col == cluster:
            raise InputError(f"exclude names the cluster column {cluster!r}")
        if col not in data.columns:
            raise InputError(f"exclude names column {col!r}, which is not in data")
        if col in derived:
            raise InputError(f"exclude names the derived variable {col!r}")
        out[col] = "exclude="
    for col in data.columns:
        if col == cluster or col in out or col in types or col in derived:
            continue
        why = not_data(data[col])
        if why:
            out[col] = why + "; name it in types= to use it"
    return out


def _study_level(data, codes, n_studies, variables, columns, level, derived, fixed,
                 cluster) -> list[str]:
    """Declared (``level={var: 2}``) and detected study-level variables."""
    level = dict(level or {})
    _check_names("level", level, columns, cluster)
    for var, lv in level.items():
        if lv not in (1, 2):
            raise InputError(f"level[{var!r}] = {lv!r}: use 1 (participant) or 2 (study)")
        if var in derived:
            raise InputError(f"level[{var!r}]: a derived variable is computed, not imputed")
    if fixed is not None:
        return [v for v in fixed.level2 if v in variables]
    out = []
    for var in columns:
        if var in derived:
            continue
        v = variables[var]
        values = _codes_of(v, data[var])
        bad, repeated = study_level_violations(values, codes, n_studies)
        if level.get(var) == 2:
            if bad.size:
                labels = pd.factorize(data[cluster], sort=True)[1]
                raise InputError(
                    f"level[{var!r}] = 2, but {var!r} takes different observed values "
                    f"within {bad.size} stud{'y' if bad.size == 1 else 'ies'} "
                    f"({', '.join(str(labels[k]) for k in bad[:5])}); a study-level "
                    "variable has one value per study"
                )
            out.append(var)
        elif (var not in level and not bad.size and repeated >= 2
              and np.unique(values[~np.isnan(values)]).size > 1):
            out.append(var)
    return out


def _codes_of(v: Variable, col: pd.Series) -> np.ndarray:
    """The values of a variable as numbers (category codes for a categorical one)."""
    if v.levels is not None:  # binary, ordinal, nominal
        lookup = {lv: float(k) for k, lv in enumerate(v.levels)}
        return np.array([np.nan if pd.isna(x) else lookup.get(x, np.nan)
                         for x in col.to_numpy(dtype=object)])
    return col.to_numpy(dtype=float)


def _check_names(arg: str, mapping: dict, columns: list[str], cluster: str) -> None:
    for key in mapping:
        if key == cluster:
            raise InputError(f"{arg}[{key!r}]: the cluster column cannot be imputed or typed")
        if key not in columns:
            raise InputError(f"{arg} names column {key!r}, which is not in data")


def _encode(col: pd.Series, vtype: str, levels: list | None) -> tuple[np.ndarray, list[str]]:
    """Numeric columns of one variable (NaN where missing)."""
    return vartypes.REGISTRY[vtype].encode(col, levels)


def _assign_methods(method, variables: dict[str, Variable], incomplete: list[str],
                    cluster: str, data: pd.DataFrame, level2: list[str] | None = None,
                    level: dict | None = None, warns: list[str] | None = None
                    ) -> dict[str, str]:
    """Method per incomplete variable: a strategy, one method for all, or a dict. A
    study-level variable gets its ``2lonly`` method unless one is given."""
    level2 = level2 or []
    level = level or {}
    strategy = "mlmi"
    per_var: dict[str, str] = {}
    if method is None:
        pass
    elif isinstance(method, str):
        if method in STRATEGIES:
            strategy = method
        else:
            get_method(method)  # raises for unknown names
            per_var = dict.fromkeys(incomplete, method)
    elif isinstance(method, dict):
        _check_names("method", method, list(variables), cluster)
        for var, name in method.items():
            if var not in incomplete and variables[var].n_missing and name:
                raise InputError(f"method[{var!r}]: {var!r} is a derived variable, "
                                 "computed from its inputs and not imputed by a model")
            if variables[var].n_missing == 0 and name:
                raise InputError(
                    f"method[{var!r}] = {name!r}, but {var!r} has no missing values"
                )
            if name in STRATEGIES:
                name = _strategy_method(var, variables[var], name)
            per_var[var] = name
    else:
        raise InputError(
            f"method must be None, a method or strategy name, or a dict variable -> method; "
            f"got {type(method).__name__}"
        )
    methods: dict[str, str] = {}
    for var in incomplete:
        v = variables[var]
        name = per_var.get(var)
        if name is None and var in level2:
            name = STUDY_LEVEL.get(v.vtype, "")
            if name and name not in available_methods():
                raise InputError(
                    f"{var!r} is a study-level {v.vtype} variable with {v.n_missing} missing "
                    f"values; its method {name!r} is not available in this installation; "
                    f"give method[{var!r}] (or '' to leave it missing)")
        if name is None:
            name = _strategy_method(var, v, strategy)
        if name:
            info = get_method(name)
            if "count" in info.types and v.vtype == "continuous" and \
                    "continuous" not in info.types:
                # say what is wrong with the values (negative / fractional)
                vartypes.check_counts(var, data[var].dropna().to_numpy(dtype=float))
            if v.vtype not in info.types:
                raise InputError(
                    f"method {name!r} imputes {' or '.join(info.types)} variables, but "
                    f"{var!r} is {v.vtype} ({v.reason})" + _type_hint(v)
                )
            if info.level == 2 and var not in level2:
                raise InputError(
                    f"method {name!r} imputes study-level variables, but {var!r} takes "
                    "different observed values within a study (or is declared level 1)"
                )
            if info.level == 1 and var in level2 and warns is not None:
                warns.append(
                    f"{var!r} is constant within every study where it is observed (a "
                    f"study-level variable) but is imputed by the participant-level method "
                    f"{name!r}: members of one study will get different values. Use "
                    f"{STUDY_LEVEL[v.vtype]!r}, or declare level={{{var!r}: 1}} if it is "
                    "a participant-level variable"
                )
        methods[var] = name
    return methods


def _type_hint(v: Variable) -> str:
    if v.vtype == "continuous":
        return f" (override with types={{{v.name!r}: 'count'}} if it is a count)"
    return ""


def _strategy_method(var: str, v: Variable, strategy: str) -> str:
    """The method of ``strategy`` for the type of ``v``; a clear error where there is
    none or it is not registered (e.g. a method of another package version)."""
    name = STRATEGIES[strategy].get(v.vtype)
    if not name:
        raise InputError(
            f"variable {var!r} is {v.vtype} with {v.n_missing} missing values; strategy "
            f"{strategy!r} has no method for {v.vtype} variables ({STRATEGIES[strategy]}); "
            f"give method[{var!r}] (or '' to leave it missing)")
    if name not in available_methods():
        raise InputError(
            f"variable {var!r} is {v.vtype} ({v.reason}) with {v.n_missing} missing values; "
            f"strategy {strategy!r} imputes {v.vtype} variables with {name!r}, which is not "
            f"available in this installation (methods: {sorted(available_methods())}); give "
            f"method[{var!r}] (or '' to leave it missing), or another type with types=")
    return name


def _predictor_matrix(pm, random, variables, methods, columns, cluster, derived=None,
                      level2=None, constants=None) -> pd.DataFrame:
    """mice's predictor matrix (targets × columns): -2 cluster, 1 fixed, 2 random slope,
    3 fixed effects of the variable and of its study mean."""
    derived = derived or {}
    level2 = level2 or []
    cols = [*columns, cluster]
    targets = [v for v, m in methods.items() if m]
    inputs_of = {d: _all_inputs(d, derived) for d in derived}
    if pm is None:
        out = pd.DataFrame(0, index=targets, columns=cols, dtype=np.int64)
        for t in targets:
            for c in columns:
                # a derived variable does not predict its own inputs (it is a function
                # of them: collinear where observed, circular where imputed)
                if c != t and not (c in derived and t in inputs_of[c]) \
                        and c not in (constants or {}):
                    out.loc[t, c] = 1
            # multilevel: the cluster; single-level: the study as fixed dummies (stratified)
            out.loc[t, cluster] = -2 if get_method(methods[t]).multilevel else 1
    else:
        if not isinstance(pm, pd.DataFrame):
            raise InputError("predictor_matrix must be a pandas DataFrame (targets × columns)")
        unknown = [c for c in list(pm.columns) + list(pm.index) if c not in cols]
        if unknown:
            raise InputError(f"predictor_matrix names unknown column(s) {unknown}")
        bad = ~pm.isin([-2, 0, 1, 2, 3])
        if bad.to_numpy().any():
            r, c = np.argwhere(bad.to_numpy())[0]
            raise InputError(
                f"predictor_matrix[{pm.index[r]!r}, {pm.columns[c]!r}] = {pm.iat[r, c]}; "
                "use mice's codes -2 (cluster), 0 (not used), 1 (fixed), 2 (random slope), "
                "3 (fixed effects of the variable and of its study mean)"
            )
        out = pd.DataFrame(0, index=targets, columns=cols, dtype=np.int64)
        for t in targets:
            if t not in pm.index:
                raise InputError(f"predictor_matrix has no row for the imputed variable {t!r}")
            for c in pm.columns:
                out.loc[t, c] = int(pm.loc[t, c])
            if out.loc[t, t] != 0:
                raise InputError(f"predictor_matrix[{t!r}, {t!r}] must be 0 (a variable "
                                 "cannot predict itself)")
            for c in columns:
                if out.loc[t, c] == -2:
                    raise InputError(
                        f"predictor_matrix[{t!r}, {c!r}] = -2, but {c!r} is not the cluster "
                        f"column {cluster!r}"
                    )
    if random is not None and not isinstance(random, dict):
        raise InputError(f"random={random!r} must be a dict variable -> list of predictors "
                         "with a random slope, e.g. {'x1': ['y']}")
    random = dict(random or {})
    _check_names("random", random, columns, cluster)
    for t, slopes in random.items():
        if isinstance(slopes, str):
            slopes = [slopes]
        if cluster in slopes:
            raise InputError(
                f"random[{t!r}] names the cluster column {cluster!r}: the study cannot have a "
                "random slope (every model has a random intercept per study already); "
                f"list predictors of {t!r}"
            )
        if t not in targets:
            raise InputError(f"random[{t!r}]: {t!r} is not imputed (it has no missing values "
                             "or no method)")
        for s in slopes:
            if s not in columns:
                raise InputError(f"random[{t!r}] names {s!r}, which is not a column of data "
                                 f"(the cluster {cluster!r} cannot have a random slope)")
            if s == t:
                raise InputError(f"random[{t!r}] contains {t!r} itself")
            if out.loc[t, s] == 0:
                raise InputError(
                    f"random slope for {s!r} in the model of {t!r}, but {s!r} is not a "
                    f"predictor of {t!r} (predictor_matrix code 0)"
                )
            out.loc[t, s] = 2
    for t in targets:
        info = get_method(methods[t])
        row = out.loc[t]
        if info.multilevel and row[cluster] != -2:
            raise InputError(
                f"method {info.name!r} for {t!r} is multilevel: predictor_matrix[{t!r}, "
                f"{cluster!r}] must be -2"
            )
        if not info.multilevel and (row == 2).any():
            raise InputError(
                f"method {info.name!r} for {t!r} is single-level and cannot have random "
                f"slopes ({list(row.index[row == 2])})"
            )
        if not info.multilevel and row[cluster] not in (0, 1):
            raise InputError(
                f"method {info.name!r} for {t!r} is single-level: predictor_matrix[{t!r}, "
                f"{cluster!r}] must be 1 (the study as fixed dummies) or 0 (ignored), "
                f"not {row[cluster]}"
            )
        if info.level == 2 and (row == 2).any():
            raise InputError(
                f"method {info.name!r} for {t!r} fits one row per study and cannot have "
                f"random slopes ({list(row.index[row == 2])})"
            )
        for c in columns:
            if row[c] == 3:
                if info.level == 2:
                    raise InputError(
                        f"predictor_matrix[{t!r}, {c!r}] = 3: {info.name!r} already uses "
                        "the study means of its predictors; use 1")
                if not info.multilevel and row[cluster] == 1:
                    raise InputError(
                        f"predictor_matrix[{t!r}, {c!r}] = 3: the study mean of {c!r} is "
                        f"collinear with the study dummies of {info.name!r}; use a "
                        "multilevel method or predictor_matrix[t, cluster] = 0")
                if c in level2:
                    raise InputError(
                        f"predictor_matrix[{t!r}, {c!r}] = 3, but {c!r} is study-level: "
                        "its study mean is itself; use 1")
            if c in derived:
                continue  # computed from its inputs, which are checked below
            if row[c] != 0 and variables[c].n_missing and not methods.get(c) and \
                    c not in (constants or {}):
                raise InputError(
                    f"{c!r} predicts {t!r} but is incomplete and not imputed; impute it or "
                    f"set predictor_matrix[{t!r}, {c!r}] = 0"
                )
    return out


def _all_inputs(name: str, derived: dict[str, Expression]) -> set[str]:
    """The data columns a derived variable depends on, through other derived ones."""
    out: set[str] = set()
    for inp in derived[name].inputs:
        out |= _all_inputs(inp, derived) if inp in derived else {inp}
    return out


def _visit_sequence(visit, methods, columns) -> list[str]:
    targets = [c for c in columns if methods.get(c)]
    if visit is None:
        return targets
    visit = list(visit)
    for v in visit:
        if v not in methods or not methods[v]:
            raise InputError(f"visit_sequence names {v!r}, which is not an imputed variable "
                             f"(imputed: {targets})")
    missing = [t for t in targets if t not in visit]
    if missing:
        raise InputError(f"visit_sequence leaves out imputed variable(s) {missing}")
    return visit


def few_studies_warnings(plan: Plan) -> list[str]:
    """A warning per multilevel-imputed variable whose observing studies are too few for
    its random-effects covariance: Psi (q × q) has q(q + 1)/2 variances and covariances,
    and m_obs studies give at most m_obs - 1 degrees of freedom about them beyond their
    mean, so m_obs <= q(q + 1)/2 leaves Psi (the slopes' part of it) to the draw's prior
    shape rather than the data. A random intercept only (q = 1) needs just 2 studies."""
    out = []
    for t in plan.imputed_variables:
        info = get_method(plan.methods[t])
        if not info.multilevel or getattr(info, "level", 1) == 2:
            continue  # study-level methods have no random effects
        m_obs = int(np.sum(plan.status[t] != SYSTEMATIC))
        _, names, roles = plan.predictors(t)
        q = 1 + int(np.sum(roles == 2))
        n_par = q * (q + 1) // 2
        if q > 1 and m_obs <= n_par:
            slopes = [nm for nm, r in zip(names, roles, strict=True) if r == 2]
            out.append(
                f"only {m_obs} studies observe {t!r}, too few for the {n_par} variances and "
                f"covariances of its {q} random effects (intercept and slope(s) for "
                f"{slopes}); the between-study covariance of its imputation model is barely "
                f"identified — consider a random intercept only for {t!r} (no random slopes)"
            )
    return out


def _check_identifiable(plan: Plan) -> None:
    """A multilevel imputation model needs its Psi estimable: >= 2 studies observing the
    variable, and at least as many as random effects per study (Wishart df >= q)."""
    for t in plan.imputed_variables:
        info = get_method(plan.methods[t])
        if not info.multilevel:
            continue
        st = plan.status[t]
        observing = plan.labels[st != SYSTEMATIC]
        _, _, roles = plan.predictors(t)
        q = 1 + int(np.sum(roles == 2))
        if observing.size < 2:
            raise ModelError(
                f"only one study observes {t!r} (study {_short(observing[0])!r}); its "
                "between-study covariance Psi cannot be estimated — use a single-level "
                f"method (e.g. method={{{t!r}: 'pmm'}}) or leave it out"
            )
        if observing.size < q:
            raise ModelError(
                f"{observing.size} studies observe {t!r}, fewer than its {q} random effects "
                "per study; Psi cannot be drawn — use fewer random slopes"
            )
