"""lme4-style model formulas with one random-effects term.

Supported: ``y ~ x1 + x2 + (1 + x1 | st)``, ``(1 | st)``, ``(x1 | st)`` (intercept
implied, as in lme4), ``(0 + x1 | st)``; ``0``/``-1`` to drop the fixed intercept;
interactions ``a:b`` and ``a*b``. Categorical predictors get treatment contrasts with
the first level as reference, and R's term names (``grpb``, ``sexTRUE``), so results
line up with lme4's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..exceptions import InputError

_NAME = r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`"


@dataclass
class Terms:
    """A parsed formula, plus what is needed to rebuild the design for new data."""

    formula: str
    response: str
    intercept: bool
    fixed: list[tuple[str, ...]]  # each term is a tuple of variable names (interaction)
    random_intercept: bool
    random: list[str]  # random-slope variables
    group: str
    levels: dict[str, list] = field(default_factory=dict)  # categorical levels seen in fit
    x_names: list[str] = field(default_factory=list)
    w_names: list[str] = field(default_factory=list)

    @property
    def variables(self) -> list[str]:
        """Every column the formula uses (response, predictors, group)."""
        seen: list[str] = [self.response]
        for term in self.fixed:
            seen.extend(term)
        seen.extend(self.random)
        seen.append(self.group)
        return list(dict.fromkeys(seen))

    # -------------------------------------------------------------- design
    def learn_levels(self, data: pd.DataFrame) -> None:
        """Record the levels of categorical predictors (first level = reference)."""
        for var in {v for term in self.fixed for v in term} | set(self.random):
            col = data[var]
            if _is_categorical(col):
                self.levels[var] = _levels(col)

    def model_arrays(
        self, data: pd.DataFrame, *, need_response: bool = True, need_group: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Fixed-effects design X, random-effects design W, and group labels."""
        cols: dict[str, np.ndarray] = {}
        x_names: list[str] = []
        n = len(data)
        if self.intercept:
            cols["(Intercept)"] = np.ones(n)
            x_names.append("(Intercept)")
        for term in self.fixed:
            for name, values in self._term_columns(data, term):
                if name not in cols:
                    cols[name] = values
                    x_names.append(name)
        X = np.column_stack([cols[nm] for nm in x_names]) if x_names else np.empty((n, 0))
        w_cols, w_names = [], []
        if self.random_intercept:
            w_cols.append(np.ones(n))
            w_names.append("(Intercept)")
        for var in self.random:
            for name, values in self._term_columns(data, (var,)):
                w_cols.append(values)
                w_names.append(name)
        W = np.column_stack(w_cols) if w_cols else np.empty((n, 0))
        self.x_names, self.w_names = x_names, w_names
        groups = data[self.group].to_numpy() if need_group else None
        return X, W, groups

    def _term_columns(self, data: pd.DataFrame, term: tuple[str, ...]):
        """Columns (name, values) of one (possibly interaction) term."""
        parts: list[list[tuple[str, np.ndarray]]] = []
        for var in term:
            col = data[var]
            if var in self.levels:
                lv = self.levels[var]
                vals = col.to_numpy()
                unknown = set(pd.unique(col.dropna())) - set(lv)
                if unknown:
                    raise InputError(
                        f"column {var!r} has level(s) {sorted(map(str, unknown))} not seen "
                        "when the model was fitted"
                    )
                parts.append([(f"{var}{_level_label(level)}", (vals == level).astype(float))
                              for level in lv[1:]])
            else:
                parts.append([(var, _numeric(col, var))])
        out = parts[0]
        for nxt in parts[1:]:
            out = [(f"{a}:{b}", va * vb) for a, va in out for b, vb in nxt]
        return out


def _is_categorical(col: pd.Series) -> bool:
    return (
        isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(col.dtype)
        or pd.api.types.is_object_dtype(col.dtype)
        or pd.api.types.is_string_dtype(col.dtype)
    )


def _levels(col: pd.Series) -> list:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.categories)
    if pd.api.types.is_bool_dtype(col.dtype):
        return [False, True]
    return sorted(pd.unique(col.dropna()), key=str)


def _level_label(level) -> str:
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    return str(level)


def _numeric(col: pd.Series, var: str) -> np.ndarray:
    try:
        return col.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"column {var!r} is not numeric (dtype {col.dtype})") from exc


def _strip(name: str) -> str:
    return name[1:-1] if name.startswith("`") and name.endswith("`") else name


def parse_formula(formula: str) -> Terms:
    """Parse ``response ~ fixed + (random | group)``."""
    if not isinstance(formula, str) or "~" not in formula:
        raise InputError(f"formula={formula!r} must be a string like 'y ~ x1 + (1 | study)'")
    lhs, rhs = formula.split("~", 1)
    response = _strip(lhs.strip())
    if not re.fullmatch(_NAME, lhs.strip()):
        raise InputError(f"formula {formula!r}: the response must be a single column name")
    bars = re.findall(r"\(([^()]*\|[^()]*)\)", rhs)
    if len(bars) != 1:
        raise InputError(
            f"formula {formula!r} must contain exactly one random-effects term such as "
            f"(1 | study); found {len(bars)}"
        )
    if "||" in bars[0]:
        raise InputError("uncorrelated random effects (||) are not supported; use |")
    re_lhs, group = (s.strip() for s in bars[0].split("|"))
    if not re.fullmatch(_NAME, group):
        raise InputError(f"formula {formula!r}: the grouping factor must be one column name")
    fixed_part = rhs.replace(f"({bars[0]})", " ")
    intercept, fixed = _parse_terms(fixed_part, formula, allow_interactions=True)
    random_intercept, random_terms = _parse_terms(re_lhs, formula, allow_interactions=False)
    return Terms(
        formula=formula.strip(),
        response=response,
        intercept=intercept,
        fixed=fixed,
        random_intercept=random_intercept,
        random=[t[0] for t in random_terms],
        group=_strip(group),
    )


def _parse_terms(text: str, formula: str, *, allow_interactions: bool):
    """Terms separated by +; '1' keeps, '0' or '-1' removes the intercept."""
    intercept = True
    terms: list[tuple[str, ...]] = []
    text = text.replace("-", "+-")
    for raw in text.split("+"):
        tok = raw.strip()
        if not tok:
            continue
        if tok == "1":
            intercept = True
        elif tok in ("0", "-1"):
            intercept = False
        elif "*" in tok and allow_interactions:
            vars_ = [_check_name(v.strip(), formula) for v in tok.split("*")]
            for v in vars_:
                terms.append((v,))
            terms.append(tuple(vars_))
        elif ":" in tok and allow_interactions:
            terms.append(tuple(_check_name(v.strip(), formula) for v in tok.split(":")))
        else:
            terms.append((_check_name(tok, formula),))
    return intercept, list(dict.fromkeys(terms))


def _check_name(tok: str, formula: str) -> str:
    if not re.fullmatch(_NAME, tok):
        raise InputError(
            f"formula {formula!r}: cannot interpret term {tok!r}; use column names, "
            "'1', '0', ':' and '*' (transform variables in the data frame first)"
        )
    return _strip(tok)
