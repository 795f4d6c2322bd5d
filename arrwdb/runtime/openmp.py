"""The server's OpenMP runtime: threads that sleep as soon as a parallel region ends.

torch and FAISS run on one OpenMP runtime in the server (torch loads its libgomp first and globally;
FAISS's own copy is loaded but its symbols resolve to torch's).  libgomp's default keeps every worker
thread spinning for ~300,000 iterations after each region (measured here: ~5 ms of a core after every
2-thread FAISS search), which on a server is a core taken from the event loop and the finishing thread
after every batch.  With ``GOMP_SPINCOUNT=0`` the workers sleep at once; a region then costs one futex
wake per worker, microseconds against a batch's milliseconds.  Read once, when the runtime loads, so
this runs before torch is imported; an operator's own ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` wins.
"""

from __future__ import annotations

import os
import sys

from arrwdb.runtime.tuning import SERVER_SPIN_COUNT


def configure_for_serving() -> bool:
    """Set the spin count for this process's runtime; False when it was already chosen (by the
    operator, or by a runtime that loaded before this call)."""
    if "torch" in sys.modules or "faiss" in sys.modules:
        return False
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = SERVER_SPIN_COUNT
    return True
