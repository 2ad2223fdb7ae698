"""Worker processes that work from any script and do not outlive their parent.

* **No re-run of the user's script.** Python's "spawn" start method re-imports the main
  module in every worker: a plain analysis script without ``if __name__ ==
  "__main__":`` re-runs its whole body there and dies ("bootstrapping phase",
  ``BrokenProcessPool``). mlmi's workers run only mlmi functions on pickled data, so the
  main module is not needed there: the workers are spawned without it, and a script,
  a notebook and ``python -`` all work, with the numbers of a serial run (every chain
  and task has its own spawned seed).
* **Ctrl-C.** Workers ignore SIGINT; the parent, on KeyboardInterrupt (or any error),
  terminates them at once instead of waiting for every running task to finish.
* **Orphans.** A process pool's workers keep computing tasks nobody will collect when
  the driver is killed (SIGKILL, an out-of-memory kill, a closed terminal): each
  worker watches its parent and exits when it is gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

#: seconds between checks of the parent
POLL = 0.5

_PATCH_LOCK = threading.Lock()


def exit_with_parent() -> None:
    """Process-pool initializer: end this worker once its parent process has died."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL)
        os._exit(1)

    threading.Thread(target=watch, name="mlmi-exit-with-parent", daemon=True).start()


def init_worker() -> None:
    """Process-pool initializer: ignore Ctrl-C (the parent stops the pool) and exit with
    the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


@contextlib.contextmanager
def _sigint_ignored():
    """Start a child with SIGINT ignored: an ignored signal stays ignored across exec, and
    Python then installs no KeyboardInterrupt handler, so a Ctrl-C while a worker is
    still starting up cannot print its traceback. (Only the main thread may change
    signal handlers; elsewhere the child is started as is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


if sys.platform != "win32":
    from multiprocessing import context as _mpcontext
    from multiprocessing import popen_spawn_posix as _popen_spawn
    from multiprocessing import spawn as _spawn

    class _Popen(_popen_spawn.Popen):
        """Spawn's Popen, minus the re-import of the main module in the child."""

        def _launch(self, process_obj):
            original = _spawn.get_preparation_data

            def without_main(name):
                data = original(name)
                data.pop("init_main_from_path", None)
                data.pop("init_main_from_name", None)
                return data

            spawnv = _popen_spawn.util.spawnv_passfds

            def spawnv_ignoring_sigint(*args):
                # SIGINT ignored only for the fork + exec (milliseconds), so the child
                # inherits the ignore; not for the rest of the launch, which waits
                # until the child has read its task (seconds on a busy machine) and in
                # which a Ctrl-C must reach the parent (an ignored one is lost)
                with _sigint_ignored():
                    return spawnv(*args)

            with _PATCH_LOCK:
                _spawn.get_preparation_data = without_main
                _popen_spawn.util.spawnv_passfds = spawnv_ignoring_sigint
                try:
                    super()._launch(process_obj)
                finally:
                    _spawn.get_preparation_data = original
                    _popen_spawn.util.spawnv_passfds = spawnv

    class _Process(_mpcontext.SpawnProcess):
        @staticmethod
        def _Popen(process_obj):
            return _Popen(process_obj)

    class _Context(_mpcontext.SpawnContext):
        Process = _Process


def _context():
    """A "spawn" context whose workers do not re-import the main module (POSIX); on
    other platforms plain "spawn"."""
    if sys.platform == "win32":  # pragma: no cover - not tested here
        return mp.get_context("spawn")
    return _Context()


def main_without_guard() -> str | None:
    """The path of the running script if it has no ``if __name__ == "__main__":`` guard
    (None for a guarded script, a notebook, ``python -`` or ``python -c``). Worker
    processes that Dask starts re-run such a script."""
    import re

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            source = fh.read()
    except OSError:
        return None
    guard = re.search(r"__name__\s*==\s*['\"]__main__['\"]|['\"]__main__['\"]\s*==\s*__name__",
                      source)
    return None if guard else path


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator:
    """A ``ProcessPoolExecutor`` of ``workers`` processes (see the module docstring).

    On leaving normally it waits for its tasks; on KeyboardInterrupt or an error it
    cancels what has not started and terminates the workers within a second.
    """
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                               initializer=init_worker)
    try:
        yield pool
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(timeout=2)
        raise
    else:
        pool.shutdown(wait=True)
