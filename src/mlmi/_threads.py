"""One BLAS thread inside mlmi's work.

Every matrix mlmi multiplies is tiny (q × q, p × p, n × 3), so a multithreaded BLAS only
adds synchronisation: on a 2-core machine an imputation ran 6× slower with OpenBLAS's
default threads than with one. Parallelism belongs at the level of chains and tasks.
"""

from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController

#: found once per process: finding the loaded BLAS libraries scans the process's shared
#: libraries (~4 ms), which ``threadpool_limits`` would repeat at every GLMM fit
_controller: ThreadpoolController | None = None


def single_threaded_blas():
    """Context manager limiting BLAS (OpenBLAS, MKL, BLIS) to one thread."""
    global _controller
    try:
        if _controller is None:
            _controller = ThreadpoolController()
        return _controller.limit(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - an unusual BLAS; run as is rather than fail
        return contextlib.nullcontext()
