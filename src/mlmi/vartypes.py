"""Variable types: one registered class per type, holding everything that depends on it.

A variable's type decides the imputation model (the default method of every strategy and
of study-level variables), how the variable enters the numeric working matrix (one column,
or dummy columns for an ordinal or nominal predictor), how imputations are written back
into the column's own labels and dtype, and how the observed-vs-imputed plot shows it.
Each of those is a method of the type's class here, so a new type is one class and one
line in :data:`REGISTRY` — the driver (:mod:`mlmi.mice`), :mod:`mlmi.methods` and
:mod:`mlmi.plots` ask the registry, never test type names.

Types: ``binary``, ``ordinal``, ``nominal`` (``categorical`` is accepted as its alias),
``count`` and ``continuous``.

How the type is inferred (:func:`infer`; ``types=`` or a method overrides it)
-----------------------------------------------------------------------------
Inference never silently picks a model that can produce values the variable cannot take.
Where it cannot be sure, it says so in a warning that names the variable and the
``types=`` override (only for variables that are imputed: a complete predictor's type only
decides how it enters the models).

1. **binary** — exactly two distinct observed values (0/1, any two numbers, bool, a
   two-level categorical or text column; the second level in sorted or category order is
   coded 1).
2. **ordinal** — a pandas *ordered* Categorical with more than two observed levels.
3. **nominal** — an unordered Categorical or a text (string/object) column with more than
   two levels; and integer **codes** 1..k: 3 to ``MAX_CODES`` (5) distinct values starting
   at 1, none above 5 (e.g. a school denomination 1-4). Codes are warned about: if they
   are ordered, use ``types={var: "ordinal"}``, if a count, ``"count"``.
4. **count** — integers with 3 to ``MAX_COUNT_LEVELS`` (20) distinct values, and either
   starting at 0 with at most 5 distinct values (a small count such as comorbidities 0-4)
   or starting at 0 or 1 and right-skewed (sample skewness >= ``COUNT_SKEW`` = 0.25: the
   shape of a Poisson or overdispersed count). A count with at most ``FEW_COUNT_VALUES``
   (4) distinct values (e.g. 0/1/2) is warned about: it may be category codes
   (``types=`` ``"ordinal"`` / ``"nominal"``) or a bounded count (``limits=``).
5. **continuous** — everything else. Integer-valued columns land here when they have more
   than 20 distinct values (age in years, blood pressure: a measurement), when their range
   is narrow and far from 0 (minimum >= 2 and above the range, with at most 20 distinct
   values, e.g. age in months 216-227), or when they are not a count by rule 4 (a bounded
   score such as 1-20, not right-skewed); the last two are warned about (imputations by
   a normal model can leave the observed range: ``limits=``, ``method="2l.pmm"``, or
   ``types={var: "count"}`` if it is a count).
   A score 0-20 that is not right-skewed is a bounded score too (continuous, warned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from .exceptions import InputError

#: integer variables with more distinct values than this are measurements (continuous)
MAX_COUNT_LEVELS = 20
#: integer codes 1..k with k <= MAX_CODES read as category codes (nominal)
MAX_CODES = 5
#: a count is right-skewed: sample skewness at least this
COUNT_SKEW = 0.25
#: a count with at most this many distinct values is warned about (codes? bounded?)
FEW_COUNT_VALUES = 4
#: strategies (``method=`` names that pick a method per type)
STRATEGY_NAMES = ("mlmi", "2stage", "stratified")
#: accepted spellings of type names in ``types=``
ALIASES = {"categorical": "nominal"}


@dataclass
class Inference:
    """A variable's type, its levels (binary / ordinal / nominal: the labels in code
    order), why, and a warning when the rule is not sure (None otherwise)."""

    vtype: str
    levels: list | None
    reason: str
    warning: str | None = None


class VarType:
    """Everything that depends on a variable's type (subclass per type)."""

    name: str = ""
    #: category codes 0..L-1, entering the models as L-1 dummy columns
    categorical: bool = False
    #: strategy -> default method
    methods: ClassVar[dict[str, str]] = {}
    #: method of a study-level variable (one value per study)
    study_level: str = ""
    #: kinds of the observed-vs-imputed figure, the first the default
    plot_kinds: tuple[str, ...] = ()
    #: values on a numeric scale that a model can put outside the observed range (so
    #: ``limits=`` applies and out-of-range values are counted)
    bounded: bool = False
    #: what the mean of the imputed values is, in the trace plot
    mean_label: str = ""

    # ---------------------------------------------------------------- infer / coerce
    def infer(self, col: pd.Series, obs: pd.Series, facts: _Facts) -> Inference | None:
        """This type, if ``col`` is one by the inference rule (module docstring)."""
        return None

    def coerce(self, col: pd.Series, obs: pd.Series) -> Inference:
        """The type forced on ``col`` (``types=`` or a method), checking its values allow
        it; raises InputError naming the variable otherwise."""
        raise NotImplementedError

    # ---------------------------------------------------------------- working matrix
    def encode(self, col: pd.Series, levels: list | None) -> tuple[np.ndarray, list[str]]:
        """The variable's columns in the numeric working matrix (NaN where missing)."""
        return col.to_numpy(dtype=float)[:, None], [str(col.name)]

    def get(self, block: np.ndarray) -> np.ndarray:
        """Current values from the variable's columns (codes for categorical types)."""
        return block[:, 0]

    def put(self, n_cols: int, values: np.ndarray) -> np.ndarray:
        """The variable's columns holding ``values`` (rows × n_cols)."""
        return np.asarray(values, dtype=float)[:, None]

    def n_levels(self, levels: list | None) -> int:
        return 0

    # ---------------------------------------------------------------- output
    def decode(self, col: pd.Series, miss: np.ndarray, values: np.ndarray,
               levels: list | None) -> pd.Series:
        """A copy of ``col`` with ``values`` (working scale) at the ``miss`` rows, in the
        column's own labels and dtype."""
        out = col.copy()
        if pd.api.types.is_integer_dtype(col.dtype) and not np.all(values == np.round(values)):
            # an integer column imputed by a continuous model keeps its fractional draws
            out = out.astype("Float64" if isinstance(col.dtype, pd.api.extensions.ExtensionDtype)
                             else float)
            out.iloc[np.flatnonzero(miss)] = values
            return out
        out.iloc[np.flatnonzero(miss)] = values
        return out.astype(col.dtype)

    def imputed_scale(self, values: np.ndarray) -> np.ndarray:
        """Imputed values as they appear in the output, on the numeric scale."""
        return values

    def method_for(self, strategy: str) -> str:
        return self.methods.get(strategy, "")


# ====================================================================== helpers
@dataclass
class _Facts:
    """Summary of a numeric column's observed values (computed once for inference)."""

    values: np.ndarray  # distinct observed values, sorted
    integer: bool
    skew: float


def _facts(obs: pd.Series) -> _Facts:
    x = obs.to_numpy(dtype=float)
    values = np.unique(x)
    integer = bool(values.size) and bool(np.all(values == np.round(values)))
    sd = x.std()
    skew = float(np.mean((x - x.mean()) ** 3) / sd ** 3) if x.size > 2 and sd > 0 else 0.0
    return _Facts(values, integer, skew)


def _sort_key(v):
    return (str(type(v)), str(v))


def _short(v) -> str:
    return str(v)[:20]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _native(col: pd.Series, value: float):
    """A value in the column's own kind (int for integer columns, else float)."""
    return int(value) if pd.api.types.is_integer_dtype(col.dtype) else float(value)


def _is_text(col: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(
        col.dtype, pd.CategoricalDtype)


def _observed_categories(col: pd.Series, obs: pd.Series) -> list:
    """A Categorical's levels that are observed, in category order."""
    seen = set(obs.unique())
    return [c for c in col.cat.categories if c in seen]


def _hint(name, *types: str) -> str:
    alts = " or ".join(f"types={{{name!r}: {t!r}}}" for t in types)
    return alts


# ====================================================================== the types
class Binary(VarType):
    name = "binary"
    methods: ClassVar[dict[str, str]] = {
        "mlmi": "2l.bin", "2stage": "2l.2stage.bin",
        "stratified": "logreg"}
    study_level = "2lonly.bin"
    plot_kinds = ("proportion",)
    mean_label = "share of 1s"

    def infer(self, col, obs, facts):
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels = _observed_categories(col, obs)
            if len(levels) == 2 or len(col.cat.categories) == 2:
                levels = levels if len(levels) == 2 else list(col.cat.categories)
                return Inference("binary", levels, "two-level categorical")
            return None
        if pd.api.types.is_bool_dtype(col.dtype):
            return Inference("binary", [False, True], "bool")
        if _is_text(col):
            values = sorted(pd.unique(obs), key=_sort_key)
            if values and all(isinstance(v, (bool, np.bool_)) for v in values):
                return Inference("binary", [False, True], "bool values")
            if len(values) == 2:
                return Inference("binary", values, f"two text values {values}")
            return None
        if facts.values.size != 2:
            return None
        if set(facts.values.tolist()) == {0.0, 1.0}:
            return Inference("binary", [_native(col, 0), _native(col, 1)], "0/1 values")
        # two values whatever their codes (1/2, 1/3, -1/1): the larger coded 1 in the
        # models and the imputations decoded back to the column's own codes
        lv = [_native(col, facts.values[0]), _native(col, facts.values[1])]
        return Inference("binary", lv, f"two values {lv[0]}/{lv[1]}")

    def coerce(self, col, obs):
        values = (_observed_categories(col, obs) if isinstance(col.dtype, pd.CategoricalDtype)
                  else sorted(pd.unique(obs), key=_sort_key))
        if len(values) != 2:
            raise InputError(
                f"variable {col.name!r} is declared binary but has {len(values)} distinct "
                f"observed values {[_short(v) for v in values[:6]]}")
        return Inference("binary", values, "")

    def encode(self, col, levels):
        values = col.to_numpy(dtype=object)
        out = np.full(len(col), np.nan)
        present = col.notna().to_numpy()
        # the second level is coded 1 (1 == 1.0, so 0/1 columns of any numeric dtype keep
        # their values; a 1/2 column becomes 0/1)
        out[present] = (values[present] == levels[1]).astype(float)
        return out[:, None], [str(col.name)]

    def decode(self, col, miss, values, levels):
        out = col.copy()
        idx = np.where(values > 0.5, 1, 0)
        where = np.flatnonzero(miss)
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
                col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            fill = np.array([levels[k] for k in idx], dtype=object)
            if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(
                    col.dtype) or str(col.dtype) == "boolean":
                out = out.astype(object)
                out.iloc[where] = fill
                return out.astype(col.dtype)
            out.iloc[where] = fill
            return out
        out.iloc[where] = np.array([levels[k] for k in idx], dtype=float)
        return out.astype(col.dtype)


class Categorical(VarType):
    """Ordinal and nominal: category codes 0..L-1 (first level the reference), dummy
    columns ``<var><level>`` (as R's treatment contrasts) as predictors."""

    categorical = True
    plot_kinds = ("bar",)
    mean_label = "mean code 0..L-1"
    study_level = "2lonly.polyreg"

    def n_levels(self, levels):
        return len(levels or [])

    def encode(self, col, levels):
        name = str(col.name)
        values = col.to_numpy(dtype=object)
        present = col.notna().to_numpy()
        cols, names = [], []
        for level in levels[1:]:
            d = np.full(len(col), np.nan)
            d[present] = (values[present] == level).astype(float)
            cols.append(d)
            names.append(f"{name}{level}")
        if not cols:
            return np.empty((len(col), 0)), []
        return np.column_stack(cols), names

    def get(self, block):
        codes = np.where(block.max(axis=1) > 0.5, block.argmax(axis=1) + 1.0, 0.0)
        return np.where(np.isnan(block).any(axis=1), np.nan, codes)

    def put(self, n_cols, values):
        codes = np.round(values).astype(np.int64)
        return (codes[:, None] == np.arange(1, n_cols + 1)).astype(float)

    def decode(self, col, miss, values, levels):
        out = col.copy()
        where = np.flatnonzero(miss)
        fill = np.array([levels[int(k)] for k in np.round(values)], dtype=object)
        if isinstance(col.dtype, pd.CategoricalDtype):
            out = out.astype(object)
            out.iloc[where] = fill
            return out.astype(col.dtype)
        if pd.api.types.is_numeric_dtype(col.dtype):
            out.iloc[where] = fill.astype(float)
            return out.astype(col.dtype)
        out = out.astype(object)
        out.iloc[where] = fill
        return out.astype(col.dtype) if pd.api.types.is_string_dtype(col.dtype) else out

    def _levels(self, col, obs) -> tuple[list, str]:
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels = _observed_categories(col, obs)
            unused = [c for c in col.cat.categories if c not in levels]
            why = f" (never observed, left out: {[_short(c) for c in unused]})" if unused \
                else ""
            return levels, why
        if _is_text(col) or pd.api.types.is_bool_dtype(col.dtype):
            return sorted(pd.unique(obs), key=_sort_key), ""
        return [_native(col, v) for v in np.unique(obs.to_numpy(dtype=float))], ""

    def coerce(self, col, obs):
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(
                col.dtype) and not isinstance(col.dtype, pd.CategoricalDtype):
            f = _facts(obs)
            if f.values.size > 2 * MAX_COUNT_LEVELS:
                raise InputError(
                    f"variable {col.name!r} is declared {self.name} but has "
                    f"{f.values.size} distinct values (more than {2 * MAX_COUNT_LEVELS}): "
                    "is it a measurement?")
        levels, why = self._levels(col, obs)
        if len(levels) < 2:
            raise InputError(f"variable {col.name!r} is declared {self.name} but has "
                             f"{len(levels)} observed level(s)")
        reason = ""
        if self.name == "ordinal" and _is_text(col):
            reason = (f"levels ordered as sorted: {[_short(v) for v in levels]}; give an "
                      "ordered pandas Categorical to set another order")
        return Inference(self.name, levels, reason + why)


class Ordinal(Categorical):
    name = "ordinal"
    methods: ClassVar[dict[str, str]] = {
        "mlmi": "2l.polr", "2stage": "2l.2stage.polr",
        "stratified": "polr"}

    def infer(self, col, obs, facts):
        if isinstance(col.dtype, pd.CategoricalDtype) and col.cat.ordered:
            levels, why = self._levels(col, obs)
            if len(levels) > 2:
                return Inference("ordinal", levels,
                                 f"ordered categorical with {len(levels)} levels{why}")
        return None


class Nominal(Categorical):
    name = "nominal"
    methods: ClassVar[dict[str, str]] = {
        "mlmi": "2l.polyreg", "2stage": "2l.2stage.polyreg",
        "stratified": "polyreg"}

    def infer(self, col, obs, facts):
        name = col.name
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels, why = self._levels(col, obs)
            return Inference("nominal", levels,
                             f"unordered categorical with {len(levels)} levels{why}")
        if _is_text(col):
            levels, _ = self._levels(col, obs)
            return Inference("nominal", levels, f"text with {len(levels)} distinct values")
        v = facts.values
        if facts.integer and 3 <= v.size <= MAX_CODES and v[0] == 1 and v[-1] <= MAX_CODES:
            levels = [_native(col, x) for x in v]
            codes = "/".join(_fmt(x) for x in v)
            return Inference(
                "nominal", levels, f"integer codes {codes} (few values from 1: category "
                                   "codes)",
                f"{name!r} has the integer values {codes}: read as the codes of an unordered "
                f"category (nominal); if the categories are ordered use "
                f"{_hint(name, 'ordinal')}, if it is a count {_hint(name, 'count')}")
        return None


class Count(VarType):
    name = "count"
    methods: ClassVar[dict[str, str]] = {
        "mlmi": "2l.pois", "2stage": "2l.2stage.pois",
        "stratified": "pmm"}
    study_level = "2lonly.pmm"
    plot_kinds = ("bar", "strip")
    bounded = True

    def infer(self, col, obs, facts):
        v, name = facts.values, col.name
        if not facts.integer or not 3 <= v.size <= MAX_COUNT_LEVELS or v[0] < 0 or v[0] > 1:
            return None
        few = v[0] == 0 and v.size <= MAX_CODES  # a few values from 0: a small count
        if facts.skew < COUNT_SKEW and not few:
            return None
        shape = (f"right-skewed (skewness {facts.skew:.2f})" if facts.skew >= COUNT_SKEW
                 else f"{v.size} values from 0")
        reason = f"non-negative integers {_fmt(v[0])}-{_fmt(v[-1])}, {shape}"
        warning = None
        if v.size <= FEW_COUNT_VALUES:
            codes = "/".join(_fmt(x) for x in v)
            warning = (f"{name!r} has only the values {codes}: imputed as a count, whose "
                       f"model can give values above {_fmt(v[-1])}; if these are category "
                       f"codes use {_hint(name, 'ordinal', 'nominal')}, if it is a bounded "
                       f"count give limits={{{name!r}: ({_fmt(v[0])}, {_fmt(v[-1])})}}")
        return Inference("count", None, reason, warning)

    def coerce(self, col, obs):
        if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(
                col.dtype) or isinstance(col.dtype, pd.CategoricalDtype):
            raise InputError(f"variable {col.name!r} (dtype {col.dtype}) cannot be treated "
                             "as count")
        check_counts(col.name, obs.to_numpy(dtype=float))
        return Inference("count", None, "")

    def decode(self, col, miss, values, levels):
        return super().decode(col, miss, np.round(values), levels)

    def imputed_scale(self, values):
        return np.round(values)


class Continuous(VarType):
    name = "continuous"
    methods: ClassVar[dict[str, str]] = {
        "mlmi": "2l.norm", "2stage": "2l.2stage.norm",
        "stratified": "norm"}
    study_level = "2lonly.norm"
    plot_kinds = ("density", "strip")
    bounded = True

    def infer(self, col, obs, facts):
        v, name = facts.values, col.name
        if not facts.integer:
            return Inference("continuous", None, "non-integer values")
        lo, hi = _fmt(v[0]), _fmt(v[-1])
        if v.size > MAX_COUNT_LEVELS:
            return Inference("continuous", None, f"integers with {v.size} distinct values "
                                                 f"{lo}-{hi} (a measurement)")
        fix = (f"a normal model can leave the observed range: consider "
               f"limits={{{name!r}: ({lo}, {hi})}} or method={{{name!r}: '2l.pmm'}}")
        if v[0] < 0:
            return Inference("continuous", None, f"integers {lo}-{hi} with negative values")
        if v[0] >= 2 and v[0] > v[-1] - v[0]:
            return Inference(
                "continuous", None, f"integers in a narrow range far from 0 ({lo}-{hi}, "
                                    f"{v.size} values)",
                f"{name!r} has {v.size} integer values in a narrow range far from 0 "
                f"({lo}-{hi}): imputed as continuous; {fix}; if it is a count use "
                f"{_hint(name, 'count')}")
        shape = (f"not right-skewed (skewness {facts.skew:.2f}: a bounded score?)"
                 if facts.skew < COUNT_SKEW else f"from {lo} (a count starts at 0 or 1)")
        return Inference(
            "continuous", None, f"integers {lo}-{hi} {shape}",
            f"{name!r} has {v.size} integer values {lo}-{hi}, {shape}: imputed as "
            f"continuous; {fix}; if it is a count use {_hint(name, 'count')}, if ordered "
            f"categories {_hint(name, 'ordinal')}")

    def coerce(self, col, obs):
        if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(
                col.dtype) or isinstance(col.dtype, pd.CategoricalDtype):
            raise InputError(f"variable {col.name!r} (dtype {col.dtype}) cannot be treated "
                             "as continuous")
        return Inference("continuous", None, "")


# ====================================================================== registry
#: every type, in the order inference tries them
REGISTRY: dict[str, VarType] = {t.name: t for t in (Binary(), Ordinal(), Nominal(), Count(),
                                                    Continuous())}
TYPES = tuple(REGISTRY)


def get_type(name: str) -> VarType:
    return REGISTRY[ALIASES.get(name, name)]


def canonical(name, arg: str = "types") -> str:
    """The registered name of a type given by a user (aliases resolved)."""
    if isinstance(name, str) and ALIASES.get(name, name) in REGISTRY:
        return ALIASES.get(name, name)
    raise InputError(f"{arg} = {name!r}: use one of {list(TYPES)} (or 'categorical', an "
                     "alias of 'nominal')")


def strategy_table(strategy: str) -> dict[str, str]:
    """The default method of every type under ``strategy``."""
    return {name: t.methods[strategy] for name, t in REGISTRY.items() if strategy in t.methods}


def study_level_table() -> dict[str, str]:
    """The method of a study-level variable of each type."""
    return {name: t.study_level for name, t in REGISTRY.items() if t.study_level}


def infer(col: pd.Series) -> Inference:
    """The type of a column from its observed values (the rule: module docstring)."""
    obs = col.dropna()
    numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(
        col.dtype) and not isinstance(col.dtype, pd.CategoricalDtype)
    facts = _facts(obs) if numeric else _Facts(np.empty(0), False, 0.0)
    if numeric and facts.values.size and not np.all(np.isfinite(facts.values)):
        raise InputError(f"column {col.name!r} has infinite values")
    if numeric and facts.values.size < 2:
        return Inference("continuous", None, f"{facts.values.size} distinct value(s)")
    for t in REGISTRY.values():
        found = t.infer(col, obs, facts)
        if found is not None:
            return found
    raise AssertionError(f"no type for {col.name!r}")  # continuous takes every number


def coerce(col: pd.Series, vtype: str, inferred: Inference, why: str) -> Inference:
    """Force ``vtype`` on ``col`` (``why``: the user's choice, e.g. ``types=``); the
    inferred decision is kept where it agrees."""
    if vtype == inferred.vtype:
        return Inference(vtype, inferred.levels, f"{inferred.reason}; {why}")
    out = REGISTRY[vtype].coerce(col, col.dropna())
    out.reason = why + (f" ({out.reason})" if out.reason else "")
    return out


def check_counts(name, x: np.ndarray) -> None:
    """A count (2l.pois) is a non-negative integer: a clear error naming the values."""
    if np.any(x < 0):
        raise InputError(
            f"variable {name!r} has negative values {np.unique(x[x < 0])[:5].tolist()}; "
            "a count (2l.pois) must be a non-negative integer")
    frac = x != np.round(x)
    if frac.any():
        raise InputError(
            f"variable {name!r} has non-integer values {np.unique(x[frac])[:5].tolist()}; "
            "a count (2l.pois) must be a non-negative integer")
