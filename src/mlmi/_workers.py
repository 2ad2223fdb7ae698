"""Worker processes that do not outlive the process that started them.

A process pool's workers keep computing tasks nobody will collect when the driver is
killed (SIGKILL, an out-of-memory kill, a closed terminal): on a 2-core machine they
slowed the rerun that resumes the study. Each worker watches its parent and exits
when it is gone (re-parented processes see another parent id).
"""

from __future__ import annotations

import os
import threading
import time

#: seconds between checks of the parent
POLL = 0.5


def exit_with_parent() -> None:
    """Process-pool initializer: end this worker once its parent process has died."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL)
        os._exit(1)

    threading.Thread(target=watch, name="mlmi-exit-with-parent", daemon=True).start()
