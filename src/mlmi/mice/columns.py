"""What each column is, before any model: not data (identifiers, dates, row names),
study-level (constant within studies), or derived from others (passive imputation).

* **Not data.** A column with a distinct value in (almost) every row — an identifier:
  text with >= 95% distinct values, or integers all distinct and numbered densely (range
  at most twice the number of rows) or in 1000 rows or more —,
  a date/time column, or a row-name column (``Unnamed: 0``, written by R's
  ``write.csv`` and pandas' ``to_csv``) is no predictor: as a number it would enter
  every model as a meaningless slope, as a category as hundreds of dummy columns. It is
  left out of every model and kept untouched in the output; :func:`not_data` says why.
  Naming the column in ``types=`` uses it after all.
* **Study-level.** A variable constant within every study where it is observed
  (at least two studies observing it twice or more) is a property of the study
  (:func:`study_level_violations`), imputed once per study (``2lonly.*`` methods).
* **Derived.** ``derived={"bmi": "weight / (height / 100) ** 2"}``: an arithmetic
  expression of other columns (:class:`Expression`), recomputed from the current
  imputations whenever an input changes, never imputed by a model.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InputError

#: share of distinct values (among >= ID_MIN_ROWS observed) that makes a text column an
#: identifier; integer columns must be all distinct, and dense or this long
ID_SHARE = 0.95
ID_MIN_ROWS = 20
ID_DENSE_OR_ROWS = 1000
#: a categorical predictor with more levels than this is warned about
MANY_LEVELS = 30

_ROW_NAMES = re.compile(r"^(Unnamed: \d+|\.\.\.\d+|)$")
_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


def not_data(col: pd.Series) -> str | None:
    """Why ``col`` is not used as data (None if it is)."""
    name = str(col.name)
    obs = col.dropna()
    n = len(col)
    if _ROW_NAMES.match(name):
        return "row-name column (its name is what R's write.csv / pandas' to_csv give one)"
    if (pd.api.types.is_datetime64_any_dtype(col.dtype)
            or pd.api.types.is_timedelta64_dtype(col.dtype)
            or isinstance(col.dtype, pd.PeriodDtype)):
        return f"date/time column (dtype {col.dtype})"
    if obs.size and (col.dtype == object or pd.api.types.is_string_dtype(col.dtype)):
        sample = obs.astype(str).head(200)
        if sample.map(lambda v: bool(_DATE.match(v))).mean() >= 0.9:
            return f"date/time column (text such as {str(sample.iloc[0])!r})"
    if obs.size >= ID_MIN_ROWS and not pd.api.types.is_bool_dtype(col.dtype):
        numeric = pd.api.types.is_numeric_dtype(col.dtype)
        distinct = obs.nunique()
        where = f"{obs.size} observed rows{'' if obs.size == n else f' of {n}'}"
        if not numeric and distinct >= ID_SHARE * obs.size:
            return f"identifier (text with {distinct} distinct values in {where})"
        if numeric and distinct == obs.size:
            x = obs.to_numpy(dtype=float)
            # integers, all distinct, and numbered densely (1..n, 1001..1800) or so many
            # that an integer-valued measurement would repeat (birth weights in grams
            # can be all distinct in 100 rows; they are not dense)
            if np.all(np.mod(x, 1) == 0) and (x.max() - x.min() + 1 <= 2 * obs.size
                                              or obs.size >= ID_DENSE_OR_ROWS):
                return f"identifier (integers, all {distinct} distinct, in {where})"
    return None


def study_level_violations(values: np.ndarray, codes: np.ndarray, n_studies: int
                           ) -> tuple[np.ndarray, int]:
    """Studies in which the observed ``values`` (NaN = missing; rows of a categorical
    variable as codes) are not all equal, and the number of studies observing the
    variable at least twice."""
    ok = ~np.isnan(values)
    v, c = values[ok], codes[ok]
    if v.size == 0:
        return np.empty(0, dtype=np.int64), 0
    lo = np.full(n_studies, np.inf)
    hi = np.full(n_studies, -np.inf)
    np.minimum.at(lo, c, v)
    np.maximum.at(hi, c, v)
    counts = np.bincount(c, minlength=n_studies)
    return np.flatnonzero((counts > 0) & (hi > lo)), int(np.sum(counts >= 2))


# ------------------------------------------------------------------ derived variables
_FUNCS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log10": np.log10,
          "log1p": np.log1p, "expm1": np.expm1}
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.divide, ast.Pow: np.power}


@dataclass
class Expression:
    """A derived variable's formula: arithmetic (+ - * / **), numbers, column names
    (a binary variable as its 0/1 coding) and the functions log, exp, sqrt, abs, log10,
    log1p, expm1."""

    name: str
    text: str
    tree: ast.Expression
    inputs: list[str]

    @classmethod
    def parse(cls, name: str, text: str) -> Expression:
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"derived[{name!r}] = {text!r}: give an expression such as "
                             "'weight / (height / 100) ** 2'")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise InputError(f"derived[{name!r}] = {text!r} is not an expression: "
                             f"{exc.msg}") from None
        inputs: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if node.id not in inputs and node.id not in _FUNCS:
                    inputs.append(node.id)
            elif isinstance(node, ast.Call):
                if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                        and len(node.args) == 1 and not node.keywords):
                    raise InputError(
                        f"derived[{name!r}] = {text!r}: only the functions "
                        f"{sorted(_FUNCS)} of one argument can be called")
            elif isinstance(node, ast.BinOp):
                if type(node.op) not in _BINOPS:
                    raise InputError(f"derived[{name!r}] = {text!r}: operator "
                                     f"{type(node.op).__name__} is not allowed (+ - * / **)")
            elif isinstance(node, ast.UnaryOp):
                if not isinstance(node.op, (ast.USub, ast.UAdd)):
                    raise InputError(f"derived[{name!r}] = {text!r}: only unary - and + "
                                     "are allowed")
            elif isinstance(node, ast.Constant):
                if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                    raise InputError(f"derived[{name!r}] = {text!r}: constant "
                                     f"{node.value!r} is not a number")
            elif not isinstance(node, (ast.Expression, ast.Load, ast.operator,
                                       ast.unaryop)):
                raise InputError(f"derived[{name!r}] = {text!r}: {type(node).__name__} is "
                                 "not allowed (arithmetic of columns only)")
        if not inputs:
            raise InputError(f"derived[{name!r}] = {text!r} uses no column")
        return cls(name, text.strip(), tree, inputs)

    def evaluate(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The values, given an array per input."""
        def ev(node):
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Name):
                return columns[node.id]
            if isinstance(node, ast.Constant):
                return float(node.value)
            if isinstance(node, ast.BinOp):
                return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
            if isinstance(node, ast.UnaryOp):
                val = ev(node.operand)
                return -val if isinstance(node.op, ast.USub) else val
            if isinstance(node, ast.Call):
                return _FUNCS[node.func.id](ev(node.args[0]))
            raise AssertionError(type(node))  # excluded by parse

        with np.errstate(all="ignore"):
            return np.asarray(ev(self.tree), dtype=float)
