"""Child processes of the server die with their parent, even when the parent is killed with
``kill -9`` and has no chance to stop them (Linux's parent-death signal)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to send SIGKILL to this process when its parent ends (a parent that ended
    before the request was made is caught by the check after it), and leave the parent's process
    group: a Ctrl-C at the terminal reaches the parent alone, which stops its children in order."""
    os.setpgid(0, 0)
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
