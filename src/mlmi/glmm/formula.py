"""lme4-style model formulas with one random-effects term.

Supported: ``y ~ x1 + x2 + (1 + x1 | st)``, ``(1 | st)``, ``(x1 | st)`` (intercept
implied, as in lme4), ``(0 + x1 | st)``; ``0``/``-1`` to drop the fixed intercept;
interactions ``a:b`` and ``a*b`` (``a*b*c`` is every interaction of a, b and c). Terms
are ordered as R orders them (main effects first, then two-way interactions, ...).
Categorical predictors are coded as R codes them: treatment contrasts with the first
level as reference where the term's margin is in the model (``y ~ grp``), indicator
columns for every level where it is not (``y ~ 0 + grp``, ``y ~ grp:x`` without ``x``),
with R's term names (``grpb``, ``sexTRUE``), so results line up with lme4's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations

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
        """Fixed-effects design X, random-effects design W, and group labels.

        With ``need_group=False`` (population-level prediction) the random-effects
        design is not built: W has no columns and the group column is not needed."""
        n = len(data)
        x_names, x_cols = self._design(data, self.fixed, self.intercept)
        X = np.column_stack(x_cols) if x_cols else np.empty((n, 0))
        self.x_names = x_names
        if not need_group:
            return X, np.empty((n, 0)), None
        w_names, w_cols = self._design(data, [(v,) for v in self.random],
                                       self.random_intercept)
        W = np.column_stack(w_cols) if w_cols else np.empty((n, 0))
        self.w_names = w_names
        return X, W, data[self.group]

    def _design(self, data: pd.DataFrame, terms: list[tuple[str, ...]], intercept: bool):
        """Column names and columns of an intercept and ``terms`` (R's coding rules)."""
        names: list[str] = []
        cols: list[np.ndarray] = []
        if intercept:
            names.append("(Intercept)")
            cols.append(np.ones(len(data)))
        present = {frozenset(t) for t in terms}
        # R's rules: a categorical variable in a term whose margin (the term without
        # it) is in the model gets contrasts, otherwise indicators for every level;
        # without an intercept, the first categorical variable of the first term that
        # has one gets indicators too (model.matrix's "first factor found")
        adjust = not intercept
        for term in terms:
            full = {v for v in term if v in self.levels
                    and len(term) > 1 and frozenset(term) - {v} not in present}
            cats = [v for v in term if v in self.levels]
            if adjust and cats:
                full.add(cats[0])
                adjust = False
            for name, values in self._term_columns(data, term, full):
                if name not in names:
                    names.append(name)
                    cols.append(values)
        return names, cols

    def _term_columns(self, data: pd.DataFrame, term: tuple[str, ...], full: set[str]):
        """Columns (name, values) of one (possibly interaction) term; the categorical
        variables in ``full`` get a column for every level, the others contrasts."""
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
                missing = col.isna().to_numpy()
                dummies = []
                for level in lv if var in full else lv[1:]:
                    d = (vals == level).astype(float)
                    d[missing] = np.nan  # a missing level is not the reference level
                    dummies.append((f"{var}{_level_label(level)}", d))
                parts.append(dummies)
            else:
                parts.append([(var, _numeric(col, var))])
        out = parts[0]
        for nxt in parts[1:]:
            # R's column order: the first variable varies fastest
            out = [(f"{a}:{b}", va * vb) for b, vb in nxt for a, va in out]
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
        if not bars and "|" in rhs:
            raise InputError(
                f"formula {formula!r}: cannot interpret the random-effects term; use "
                "(1 + x1 | study) with column names only (transform variables in the "
                "data frame first)"
            )
        raise InputError(
            f"formula {formula!r} must contain exactly one random-effects term such as "
            f"(1 | study); found {len(bars)}"
        )
    if "||" in bars[0]:
        raise InputError(
            f"formula {formula!r}: uncorrelated random effects (||) are not supported; use |"
        )
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


def _split(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at the characters in ``seps`` outside backticks and parentheses;
    returns (separator before the piece, piece) pairs, the first with separator ''."""
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    sep, depth, tick = "", 0, False
    for ch in text:
        if ch == "`":
            tick = not tick
        elif not tick and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not tick and depth == 0 and ch in seps:
            out.append((sep, "".join(buf).strip()))
            buf, sep = [], ch
            continue
        buf.append(ch)
    out.append((sep, "".join(buf).strip()))
    return out


def _parse_terms(text: str, formula: str, *, allow_interactions: bool):
    """Terms separated by +; '1' keeps, '0' or '- 1' removes the intercept.

    ``a:b`` is an interaction, ``a*b`` is ``a + b + a:b`` (``a*b*c``: every subset).
    As in R, a term's variables are put in the order the variables first appear, terms
    are de-duplicated (``b:a`` is ``a:b``) and sorted by order (main effects first)."""
    intercept = True
    terms: list[tuple[str, ...]] = []
    for sign, tok in _split(text, "+-"):
        if not tok:
            if sign == "-":
                raise InputError(f"formula {formula!r}: '-' must be followed by a term")
            continue
        if sign == "-":
            if tok not in ("0", "1"):
                raise InputError(
                    f"formula {formula!r}: cannot remove term {tok!r}; '-' is only "
                    "supported for the intercept ('- 1')"
                )
            intercept = tok == "0"
        elif tok == "1":
            intercept = True
        elif tok == "0":
            intercept = False
        else:
            factors = [[_check_name(v, formula) for _, v in _split(f, ":")]
                       for _, f in _split(tok, "*")]
            if not allow_interactions and (len(factors) > 1 or len(factors[0]) > 1):
                raise InputError(
                    f"formula {formula!r}: interactions ({tok!r}) are not supported in "
                    "the random-effects term; create the product column in the data frame"
                )
            for r in range(1, len(factors) + 1):
                for combo in combinations(factors, r):
                    terms.append(tuple(dict.fromkeys(v for f in combo for v in f)))
    first = {v: i for i, v in enumerate(dict.fromkeys(v for t in terms for v in t))}
    unique = list(dict.fromkeys(tuple(sorted(t, key=first.__getitem__)) for t in terms))
    return intercept, sorted(unique, key=len)


def _check_name(tok: str, formula: str) -> str:
    if tok == ".":
        raise InputError(
            f"formula {formula!r}: '.' (all other columns) is not supported; name the columns"
        )
    if not re.fullmatch(_NAME, tok):
        raise InputError(
            f"formula {formula!r}: cannot interpret term {tok!r}; use column names, "
            "'1', '0', ':' and '*' (transform variables in the data frame first)"
        )
    if _strip(tok) == "(Intercept)":
        # it would be taken for the intercept column and silently dropped
        raise InputError(
            f"formula {formula!r}: a column named '(Intercept)' clashes with the intercept "
            "term's name; rename the column"
        )
    return _strip(tok)
