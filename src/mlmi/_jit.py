"""Keep numba's on-disk caches of mlmi's compiled kernels consistent.

numba invalidates a cached function when *its own* source file changes, but not when a
function it calls from another module does (agq.py and posterior.py call laplace.py's
Newton iteration). After an edit to one kernel file, the others would silently run
stale code. So, before any kernel is imported, all of mlmi's cache files are removed
if any kernel source is newer than the oldest of them. This costs a few stat calls;
it matters for editable installs (developers), since a reinstall rewrites every file.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def invalidate_stale_caches() -> None:
    """Remove mlmi's numba cache files if a kernel source changed after they were made."""
    try:
        caches = [p for pat in ("*.nbi", "*.nbc") for p in _PACKAGE.rglob(f"__pycache__/{pat}")]
        if not caches:
            return
        sources = [p for p in _PACKAGE.rglob("*.py") if "njit" in p.read_text(errors="ignore")]
        newest_source = max(p.stat().st_mtime for p in sources)
        oldest_cache = min(p.stat().st_mtime for p in caches)
        if newest_source > oldest_cache:
            for p in caches:
                p.unlink(missing_ok=True)
    except OSError:  # read-only install or a race with another process: leave it
        pass


def kernels_cached() -> bool:
    """Whether compiled kernels are on disk (if not, the first fit compiles them). In a
    read-only install numba caches elsewhere, so this answers True there."""
    import os

    try:
        if not os.access(_PACKAGE, os.W_OK):
            return True
        return any(_PACKAGE.rglob("__pycache__/*.nbi"))
    except OSError:  # pragma: no cover
        return True
