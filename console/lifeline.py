"""Child processes that die with their parent.

A `payouts dev` killed with SIGKILL runs no cleanup, and its Temporal dev server would keep the
ports (and the SQLite file) until someone finds it. On Linux the child asks the kernel for SIGTERM
when its parent goes (`prctl(PR_SET_PDEATHSIG)`), which is what a normal stop sends it too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` (None where the kernel offers no such thing).

    The signal follows the *thread* that forked the child, so start children from the thread that
    lives as long as the process (`payouts dev` starts them from its main thread)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody would signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
