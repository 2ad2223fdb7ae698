"""The paper's grid of simulation scenarios (METHOD.md §6)."""

from __future__ import annotations

import itertools

from ..exceptions import InputError
from .design import MECHANISMS, OMEGA, OUTCOMES, X1_TYPES

STUDIES = (6, 10, 15, 20, 30)
SYS = (0.1, 0.3)
KEYS = ("outcome", "heterogeneity", "studies", "sys", "mechanism")
#: optional scenario key: the type of x1 ("binary", the paper's, when absent)
OPTIONAL_KEYS = ("x1",)
#: issue 11's categorical extension: x1 a 4-category ordinal or nominal covariate
CATEGORICAL = {"outcome": ("binary",), "heterogeneity": ("moderate", "strong"),
               "studies": (10, 30), "sys": (0.3,), "mechanism": ("mar",),
               "x1": ("ordinal", "nominal")}


def scenario_id(s: dict) -> str:
    """A stable, readable identifier, e.g. ``binary-strong-k10-sys0.3-mar`` (with
    ``-x1ordinal`` / ``-x1nominal`` appended for a categorical x1)."""
    sid = f"{s['outcome']}-{s['heterogeneity']}-k{s['studies']}-sys{s['sys']}-{s['mechanism']}"
    x1 = s.get("x1", "binary")
    return sid if x1 == "binary" else f"{sid}-x1{x1}"


def x1_type(s: dict) -> str:
    """The type of x1 in scenario ``s`` ("binary" unless the scenario says otherwise)."""
    return s.get("x1", "binary")


def scenarios(grid: str = "paper", **where) -> list[dict]:
    """The scenarios of a grid, as dicts with keys outcome ("binary"/"continuous"),
    heterogeneity ("weak"/"moderate"/"strong"), studies (6, 10, 15, 20, 30), sys (the
    proportion of systematically missing studies, 0.1 or 0.3) and mechanism
    ("mcar"/"mar"). ``grid="paper"``: all 120 combinations, in a fixed order.
    ``grid="tiny"``: 2 small scenarios for smoke tests. ``grid="categorical"``: issue 11's
    extension, x1 a 4-category ordinal or nominal covariate (key ``x1``), binary outcome,
    MAR, 30 % systematically missing studies, 10 and 30 studies, moderate and strong
    heterogeneity (8 scenarios).

    ``where``: keep only the scenarios whose fields take the given value, or one of the
    given values, e.g. ``scenarios(outcome="binary", mechanism="mar", studies=[6, 10])``.
    """
    if grid == "paper":
        found = [dict(zip(KEYS, combo, strict=True)) for combo in itertools.product(
            OUTCOMES, tuple(OMEGA), STUDIES, SYS, MECHANISMS)]
    elif grid == "tiny":
        found = [
            {"outcome": "binary", "heterogeneity": "strong", "studies": 6, "sys": 0.3,
             "mechanism": "mar"},
            {"outcome": "continuous", "heterogeneity": "weak", "studies": 6, "sys": 0.1,
             "mechanism": "mcar"},
        ]
    elif grid == "categorical":
        keys = (*KEYS, "x1")
        found = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(
            *(CATEGORICAL[k] for k in keys))]
    else:
        raise InputError(f"grid={grid!r}: use 'paper', 'categorical' or 'tiny'")
    for key, wanted in where.items():
        if key not in (*KEYS, *OPTIONAL_KEYS):
            raise InputError(f"unknown scenario key {key!r}; use {list(KEYS)}")
        allowed = set(wanted) if isinstance(wanted, list | tuple | set) else {wanted}
        found = [s for s in found if s.get(key, "binary") in allowed]
    if not found:
        raise InputError(f"no scenario of grid {grid!r} has {where}")
    return found


def parse_where(text: str) -> dict:
    """``"outcome=binary,studies=6/10"`` → ``{"outcome": ["binary"], "studies": [6, 10]}``
    (the command line's ``--where``; alternatives separated by "/")."""
    return {key: [_value(key, v.strip(), "--where") for v in values.split("/")]
            for key, values in _key_values(text, "--where")}


def _key_values(text: str, what: str):
    """(key, value text) of "key=value,key=value", keys checked against KEYS."""
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InputError(f"{what} part {part!r} must look like key=value")
        key, value = (x.strip() for x in part.split("=", 1))
        if key not in (*KEYS, *OPTIONAL_KEYS):
            raise InputError(f"unknown scenario key {key!r}; use "
                             f"{list((*KEYS, *OPTIONAL_KEYS))}")
        yield key, value


def _value(key: str, text: str, what: str):
    try:
        return int(text) if key == "studies" else float(text) if key == "sys" else text
    except ValueError:
        raise InputError(f"{what} {key}={text!r}: not a valid {key}") from None


def parse_scenario(text: str) -> dict:
    """``"outcome=binary,heterogeneity=strong,studies=10,sys=0.3,mechanism=mar"`` → dict.
    Keys left out take the paper's Table 1–3 setting (binary, 10 studies, MAR, 0.3)."""
    s = {"outcome": "binary", "heterogeneity": "moderate", "studies": 10, "sys": 0.3,
         "mechanism": "mar"}
    for key, value in _key_values(text, "scenario"):
        s[key] = _value(key, value, "scenario")
    validate(s)
    return s


def validate(s: dict) -> None:
    """Raise :class:`InputError` unless ``s`` is a valid scenario."""
    missing = [k for k in KEYS if k not in s]
    if missing:
        raise InputError(f"scenario {s} lacks key(s) {missing}")
    if s["outcome"] not in OUTCOMES:
        raise InputError(f"outcome={s['outcome']!r}: use one of {list(OUTCOMES)}")
    if s["heterogeneity"] not in OMEGA:
        raise InputError(f"heterogeneity={s['heterogeneity']!r}: use one of {list(OMEGA)}")
    if s["mechanism"] not in MECHANISMS:
        raise InputError(f"mechanism={s['mechanism']!r}: use one of {list(MECHANISMS)}")
    if not isinstance(s["studies"], int) or s["studies"] < 2 or 3000 % s["studies"]:
        raise InputError(f"studies={s['studies']!r} must be an integer >= 2 dividing 3000")
    if not 0 <= s["sys"] < 1:
        raise InputError(f"sys={s['sys']!r} must be in [0, 1)")
    if s.get("x1", "binary") not in X1_TYPES:
        raise InputError(f"x1={s['x1']!r}: use one of {list(X1_TYPES)}")
