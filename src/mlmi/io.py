"""Reading and writing data files for the command line: CSV, Parquet, Stata.

Writing is all-or-nothing: every file goes to a temporary file in the same folder and is
renamed to its final name only when complete (a rename within a folder is atomic), so
an interrupted or failed run never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import InputError

READERS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".pq": "parquet", ".dta": "stata"}
WRITERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: separators tried when a CSV file's separator is not given
SEPARATORS = (",", ";", "\t", "|")
#: text read as a missing value besides pandas' defaults (empty, NA, NaN, …):
#: "." is the missing-value code of Stata and SAS exports
MISSING_CODES = (".",)


def read_table(path: str | Path, *, sep: str | None = None, encoding: str | None = None,
               na_values: Iterable[str] | None = None, notes: list[str] | None = None
               ) -> pd.DataFrame:
    """Read a CSV (empty field = missing), TSV, Parquet or Stata ``.dta`` file.

    sep : the CSV field separator; default: detected from the header line (one of
        ``, ; TAB |``).
    encoding : the text encoding of a CSV file; default: UTF-8, or Latin-1 when the
        file is not valid UTF-8 (noted).
    na_values : extra text codes read as missing (besides empty fields, NA and ".").
    notes : a list that receives what was detected or converted (for the user).
    """
    path = Path(path)
    notes = notes if notes is not None else []
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"cannot read {str(path)!r}: use a .csv, .tsv, .parquet or .dta file")
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"input file {str(path)!r} is a folder, not a data file")
    try:
        if kind in ("csv", "tsv"):
            frame = _read_text(path, "\t" if kind == "tsv" and sep is None else sep,
                               encoding, list(na_values or ()), notes)
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_stata(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read {str(path)!r} as {kind}: {exc}") from exc
    if frame.shape[1] == 0:
        raise InputError(f"{str(path)!r} has no columns")
    if len(frame) == 0:
        raise InputError(f"{str(path)!r} has a header ({list(frame.columns)[:8]}) but no "
                         "data rows")
    return frame


def _read_text(path: Path, sep: str | None, encoding: str | None, na_values: list[str],
               notes: list[str]) -> pd.DataFrame:
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{str(path)!r} is empty")
    if encoding is None:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            text = raw.decode("latin-1")
            notes.append(f"{path.name} is not valid UTF-8 (byte {raw[exc.start]:#x} at "
                         f"position {exc.start}); read as Latin-1 (give --encoding to "
                         "choose another)")
    else:
        try:
            text = raw.decode(encoding)
        except LookupError as exc:
            raise InputError(f"--encoding {encoding!r} is not a known text encoding") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{str(path)!r} is not valid {encoding} (byte "
                             f"{raw[exc.start]:#x} at position {exc.start}); give the "
                             "file's encoding with --encoding") from exc
    header = text.splitlines()[0]
    if sep is None:
        counts = {s: header.count(s) for s in SEPARATORS}
        sep = max(counts, key=counts.get) if max(counts.values()) else ","
        if sep != ",":
            notes.append(f"{path.name}: fields separated by {sep!r} (detected; give --sep "
                         "to choose another)")
    elif len(sep) != 1:
        raise InputError(f"--sep {sep!r} must be one character, e.g. ',' ';' or '\\t'")
    names = next(csv.reader([header], delimiter=sep))
    seen: set[str] = set()
    dup = [n for n in names if n in seen or seen.add(n)]
    if dup:
        raise InputError(f"{str(path)!r}: column name(s) {sorted(set(dup))} appear more than "
                         "once in the header; give every column its own name")
    frame = pd.read_csv(io.StringIO(text), sep=sep, na_values=na_values or None)
    for name in frame.columns:
        col = frame[name]
        if not (col.dtype == object or pd.api.types.is_string_dtype(col.dtype)):
            continue
        codes = col.isin(MISSING_CODES)
        if codes.any():
            rest = col[~codes & col.notna()]
            numbers = pd.to_numeric(rest, errors="coerce")
            if numbers.notna().all():
                frame[name] = pd.to_numeric(col.mask(codes), errors="coerce")
            else:
                frame[name] = col.mask(codes)
            notes.append(f"column {name!r}: {int(codes.sum())} value(s) '.' read as missing")
    return frame


def check_writable(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Check, before any work, that ``path`` can be written: a known extension, not a
    folder, and not one of the ``inputs`` (which would be overwritten)."""
    path = Path(path)
    if WRITERS.get(path.suffix.lower()) is None:
        raise InputError(f"cannot write {str(path)!r}: use a .csv or .parquet file name")
    if path.is_dir():
        raise InputError(f"output {str(path)!r} is a folder; give a file name")
    for src in inputs:
        if _same_file(path, Path(src)):
            raise InputError(f"output {str(path)!r} is the input file {str(src)!r}; it would "
                             "be overwritten — choose another output name")
    return path


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV or Parquet file (by extension), creating the folder; all or nothing."""
    return write_tables([(frame, path)])[0]


def write_tables(items: list[tuple[pd.DataFrame | bytes | str, str | Path]]) -> list[Path]:
    """Write several files all or nothing: each to a temporary file in its folder, then,
    once all are complete, rename them to their names. On any error or Ctrl-C the
    temporary files are removed and no file appears under a final name."""
    paths = []
    for obj, path in items:
        path = Path(path)
        if not isinstance(obj, (bytes, str)):
            check_writable(path)
        paths.append(path)
    temps: list[Path] = []
    try:
        for (obj, _), path in zip(items, paths, strict=True):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the folder of {str(path)!r}: "
                                 f"{exc.strerror}") from exc
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temps.append(tmp)
            try:
                _write_one(obj, path, tmp)
            except OSError as exc:
                raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
        for tmp, path in zip(temps, paths, strict=True):
            os.replace(tmp, path)
        temps = []
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return paths


def _write_one(obj, path: Path, tmp: Path) -> None:
    if isinstance(obj, (bytes, str)):
        data = obj.encode() if isinstance(obj, str) else obj
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return
    if WRITERS[path.suffix.lower()] == "csv":
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            obj.to_csv(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
    else:
        obj.to_parquet(tmp, index=False)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path in the folder of ``path`` (same suffix, so writers that go
    by the extension work); when the block ends normally it is renamed to ``path``, on
    an error or Ctrl-C it is removed. The folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_long(long: pd.DataFrame, source: str, raw_tail: bytes | None = None,
               meta: dict | None = None) -> None:
    """Refuse a long-format file (``.imp``, ``.id``) that is not complete: the last line
    cut off, imputation numbers not 1..m, an imputation missing rows (or cells that the
    other imputations have filled), or fewer imputations/rows than its metadata says."""
    if raw_tail is not None and raw_tail and not raw_tail.endswith(b"\n"):
        raise InputError(f"{source!r} ends in the middle of a line: the file was not "
                         "completely written (truncated); impute again")
    imp = long[".imp"]
    if imp.isna().any() or not np.all(np.asarray(imp, dtype=float) == np.round(imp)):
        raise InputError(f"{source!r}: column '.imp' must hold whole imputation numbers")
    imps = sorted(int(v) for v in pd.unique(imp) if v > 0)
    if not imps:
        raise InputError(f"{source!r} holds no imputations (no rows with .imp >= 1)")
    expected = list(range(1, max(imps) + 1))
    gaps = sorted(set(expected) - set(imps))
    if gaps:
        raise InputError(f"{source!r}: imputation(s) {_ranges(gaps)} of 1..{max(imps)} are "
                         "missing; the file is incomplete")
    if meta is not None and int(meta.get("m", len(imps))) != len(imps):
        raise InputError(f"{source!r} holds {len(imps)} imputations, but its metadata says "
                         f"{meta['m']} were written: the file is truncated; impute again")
    groups = {k: g for k, g in long[long[".imp"] > 0].groupby(".imp", sort=True)}
    sizes = {k: len(g) for k, g in groups.items()}
    n = int(meta["n"]) if meta is not None and "n" in meta else max(sizes.values())
    if ".id" in long.columns:
        full = set(range(1, n + 1)) if meta is not None and "n" in meta else \
            set().union(*(set(g[".id"].tolist()) for g in groups.values()))
        for k, g in groups.items():
            missing = sorted(full - set(g[".id"].tolist()))
            if missing:
                raise InputError(
                    f"{source!r}: imputation {k} lacks {len(missing)} of {len(full)} rows "
                    f"(.id {_ranges(missing)}); the file is truncated; impute again")
            if g[".id"].duplicated().any():
                dup = sorted(set(g.loc[g[".id"].duplicated(), ".id"].tolist()))
                raise InputError(f"{source!r}: imputation {k} has .id {_ranges(dup)} more "
                                 "than once")
    for k, size in sizes.items():
        if size != n:
            raise InputError(f"{source!r}: imputation {k} has {size} rows, the others "
                             f"{n}; the file is truncated; impute again")
    counts = pd.DataFrame({k: g.isna().sum() for k, g in groups.items()})
    low = counts.min(axis=1)
    for col, row in counts.iterrows():
        worse = row[row > low[col]]
        if len(worse):
            k = int(worse.index[0])
            raise InputError(f"{source!r}: imputation {k} has {int(worse.iloc[0])} missing "
                             f"value(s) in {col!r} where other imputations have "
                             f"{int(low[col])}; the file is damaged or truncated")


def _ranges(values: list[int]) -> str:
    """1, 2, 3, 7 -> '1..3, 7' (at most 6 pieces)."""
    parts: list[str] = []
    start = prev = None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}" if start == prev else f"{start}..{prev}")
            start = prev = v
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}..{prev}")
    more = f" (+{len(parts) - 6} more)" if len(parts) > 6 else ""
    return ", ".join(parts[:6]) + more
