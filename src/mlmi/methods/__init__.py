"""Univariate imputation methods, registered by name (like mice's ``mice.impute.*``).

A method is a function ``f(problem: Problem) -> Draw`` in its own module, registered
with :func:`register`; the chained-equation driver finds it by name and never
changes when a method is added. Strategies map variable types to methods, so one
word switches a whole analysis between the rows of the paper's tables.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import vartypes
from ..exceptions import InputError
from .base import COMPLETE, SPORADIC, SYSTEMATIC, Draw, MethodInfo, Problem

_REGISTRY: dict[str, MethodInfo] = {}

#: strategy -> method per variable type (each type's defaults live with the type, in
#: mlmi.vartypes)
STRATEGIES: dict[str, dict[str, str]] = {s: vartypes.strategy_table(s)
                                         for s in vartypes.STRATEGY_NAMES}

#: method per type of a study-level variable (constant within studies), for every strategy
STUDY_LEVEL: dict[str, str] = vartypes.study_level_table()


def register(name: str, *, types: tuple[str, ...], multilevel: bool, description: str = "",
             level: int = 1, donor: bool = False) -> Callable:
    """Decorator registering an imputation method under ``name`` (``level=2``: it imputes
    study-level variables, one value per study; ``donor=True``: its imputations are
    observed values of the variable, as predictive mean matching's)."""

    def deco(func: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"imputation method {name!r} is already registered")
        # type names as the registry spells them ("categorical": both kinds of category)
        names: list[str] = []
        for t in types:
            for c in (("ordinal", "nominal") if t == "categorical" else (t,)):
                if c not in vartypes.REGISTRY:
                    raise ValueError(f"method {name!r}: unknown variable type {t!r}")
                if c not in names:
                    names.append(c)
        _REGISTRY[name] = MethodInfo(name, tuple(names), multilevel, func, description,
                                     level, donor)
        return func

    return deco


def get_method(name: str) -> MethodInfo:
    """The registered method ``name``; a precise error for an unknown name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown imputation method {name!r}; available: {sorted(_REGISTRY)} "
            f"(or a strategy: {sorted(STRATEGIES)})"
        ) from None


def available_methods() -> dict[str, MethodInfo]:
    """All registered methods by name."""
    return dict(_REGISTRY)


def _load_all() -> None:
    """Import every module of this package: each registers its methods, so adding a
    method is adding one file."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


_load_all()

__all__ = [
    "COMPLETE",
    "SPORADIC",
    "STRATEGIES",
    "STUDY_LEVEL",
    "SYSTEMATIC",
    "Draw",
    "MethodInfo",
    "Problem",
    "available_methods",
    "get_method",
    "register",
]
