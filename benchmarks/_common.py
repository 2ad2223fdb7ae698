"""Helpers shared by the benchmark scripts: single-threaded BLAS, machine info, timing."""

from __future__ import annotations

import os

# one thread inside fits: set before numpy is imported anywhere
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402


def machine() -> str:
    """One line describing the machine, for BENCHMARKS.md."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}, {datetime.date.today().isoformat()}")


def _wall_ms(fn: Callable[[], object], reps: int) -> np.ndarray:
    """Wall time of each of ``reps`` calls, in milliseconds."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * np.array(times)


def median_ms(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``reps`` calls, in milliseconds."""
    return float(np.median(_wall_ms(fn, reps)))


def best_ms(fn: Callable[[], object], reps: int) -> float:
    """Shortest wall time of ``reps`` calls, in milliseconds: on a virtual machine whose
    other tenants take the core now and then, the run that nothing interrupted (medians
    there vary by 20-40 % from minute to minute, the shortest time by a few %)."""
    return float(np.min(_wall_ms(fn, reps)))


def median_cpu_ms(fn: Callable[[], object], reps: int) -> float:
    """Median CPU time of this process over ``reps`` calls, in milliseconds: on a machine
    shared with other work it is far less inflated than wall time (one thread here, so
    CPU time is the time the fit needs; cache and core contention still count)."""
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def have_r_package(pkg: str) -> bool:
    """Is ``Rscript`` on the PATH with ``pkg`` installed? (never required)"""
    if shutil.which("Rscript") is None:
        return False
    check = f"quit(status = !requireNamespace('{pkg}', quietly = TRUE))"
    res = subprocess.run(["Rscript", "-e", check], capture_output=True)
    return res.returncode == 0


def run_r(script: str, timeout: float = 3600) -> str:
    """Run an R script and return its standard output."""
    res = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"Rscript failed:\n{res.stderr[-2000:]}")
    return res.stdout


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A markdown table (readable on a terminal and pasteable into BENCHMARKS.md)."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")).ljust(w)
                                for c, w in zip(columns, widths, strict=True)) + " |")
