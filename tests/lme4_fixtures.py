"""Read the lme4 reference fixtures in ``tests/fixtures/lme4`` (see its README.md).

Pure pandas/json, no mlmi imports, usable from any working directory::

    from lme4_fixtures import iter_fits, matrix

    for case in iter_fits():
        case.name, case.key, case.data_kind   # "bin_k10_strong", "cc/analysis_binom/nAGQ1", "cc"
        case.data                             # the DataFrame the fit used
        case.fit["fixef"], matrix(case.fit["vcov"])

Each ``<name>.json`` holds the fits of one dataset, keyed
``complete|cc / model / nAGQ1|nAGQ0|nAGQ5|nAGQ15|ML|REML``. A JSON with a top-level
``"data"`` key (slope_only.json) uses the CSVs of the dataset it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "lme4"

DATA_KINDS = ("complete", "cc")


@dataclass(frozen=True)
class FitCase:
    """One lme4 fit and the data it was fitted to."""

    name: str
    """Dataset (JSON file stem), e.g. ``"bin_k10_strong"``."""
    key: str
    """Fit key, e.g. ``"complete/analysis_binom/nAGQ1"``."""
    data_kind: str
    """``"complete"`` (the complete CSV) or ``"cc"`` (complete cases of the missing CSV)."""
    data: pd.DataFrame = field(repr=False)
    fit: dict[str, Any] = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    """The JSON's top level without ``fits`` (spec, n, sys_missing_x1, ...)."""

    @property
    def model(self) -> str:
        """Middle part of the key, e.g. ``"analysis_binom"``."""
        return self.key.split("/")[1]

    @property
    def variant(self) -> str:
        """Last part of the key, e.g. ``"nAGQ1"`` or ``"REML"``."""
        return self.key.split("/")[2]

    @property
    def id(self) -> str:
        """A readable test id, e.g. ``"bin_k10_strong:cc/analysis_binom/nAGQ1"``."""
        return f"{self.name}:{self.key}"


def matrix(d: dict[str, Any]) -> pd.DataFrame:
    """Turn ``{rownames, colnames, values}`` (values row-major) into a DataFrame."""
    return pd.DataFrame(
        [list(map(float, row)) for row in d["values"]],
        index=as_list(d["rownames"]),
        columns=as_list(d["colnames"]),
    )


def as_list(x: Any) -> list:
    """A JSON field that may be null, a scalar or an array, as a list.

    The shared reference JSONs were written with jsonlite's ``auto_unbox``: a
    one-element vector appears as a scalar (e.g. ``"sys_missing_x1": 1``,
    ``"captured_messages": "message: ..."``) and an empty one as ``[]`` or null.
    """
    if x is None:
        return []
    if isinstance(x, list):
        return x
    return [x]


def fixture_names() -> list[str]:
    """Names of all datasets with a JSON in FIXTURE_DIR, sorted."""
    return sorted(p.stem for p in FIXTURE_DIR.glob("*.json"))


@cache
def _load_json(name: str) -> dict[str, Any]:
    with open(FIXTURE_DIR / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


def load_json(name: str) -> dict[str, Any]:
    """The parsed ``<name>.json`` (a fresh copy; callers may modify it)."""
    return json.loads(json.dumps(_load_json(name)))


@cache
def _read_csv(stem: str, which: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURE_DIR / f"{stem}_{which}.csv")


def data_name(name: str) -> str:
    """The dataset whose CSVs ``name`` uses (itself, or its top-level ``"data"``)."""
    return _load_json(name).get("data", name)


def load_data(name: str, kind: str = "complete") -> pd.DataFrame:
    """The data a fit of ``kind`` used.

    ``"complete"``: the complete CSV. ``"cc"``: the rows of the missing CSV without
    any missing value, with each column cast back to the complete CSV's dtype (the
    empty fields make pandas read x1/x2 as float); the index is the row number in
    the missing CSV. ``"missing"``: the missing CSV as read. The study column ``st``
    is kept as read: integers stay integers, labels like "S01" stay strings.
    """
    stem = data_name(name)
    complete = _read_csv(stem, "complete")
    if kind == "complete":
        return complete.copy()
    missing = _read_csv(stem, "missing")
    if kind == "missing":
        return missing.copy()
    if kind != "cc":
        raise ValueError(f"kind must be 'complete', 'cc' or 'missing', got {kind!r}")
    cc = missing.dropna()
    return cc.astype(complete.dtypes.to_dict())


def iter_fits(names: Iterable[str] | None = None) -> Iterator[FitCase]:
    """Yield every fit of the given datasets (default: all), in file and key order."""
    for name in fixture_names() if names is None else names:
        obj = _load_json(name)
        meta = {k: v for k, v in obj.items() if k != "fits"}
        data_cache: dict[str, pd.DataFrame] = {}
        for key, fit in obj["fits"].items():
            kind = key.split("/")[0]
            if kind not in DATA_KINDS:
                raise ValueError(
                    f"{name}.json: fit key {key!r} starts with neither 'complete/' nor 'cc/'"
                )
            if kind not in data_cache:
                data_cache[kind] = load_data(name, kind)
            yield FitCase(
                name=name,
                key=key,
                data_kind=kind,
                data=data_cache[kind].copy(),
                fit=json.loads(json.dumps(fit)),
                meta=json.loads(json.dumps(meta)),
            )
