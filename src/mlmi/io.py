"""Reading and writing data files for the command line: CSV, Parquet, Stata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .exceptions import InputError

READERS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".pq": "parquet", ".dta": "stata"}
WRITERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (empty field = missing), TSV, Parquet or Stata ``.dta`` file."""
    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"cannot read {str(path)!r}: use a .csv, .tsv, .parquet or .dta file")
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    try:
        if kind == "csv":
            return pd.read_csv(path)
        if kind == "tsv":
            return pd.read_csv(path, sep="\t")
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_stata(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read {str(path)!r} as {kind}: {exc}") from exc


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV or Parquet file (by extension), creating the folder."""
    path = Path(path)
    kind = WRITERS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"cannot write {str(path)!r}: use a .csv or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path
