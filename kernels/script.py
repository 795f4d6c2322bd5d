"""A function run as one TorchScript call, so the device worker gives up the GIL once per search.

Each eager torch call releases the GIL and takes it back, and the device worker shares the GIL with
the event loop.  While the loop is busy, every taking-back waits up to the switch interval: on the
H200, a 151-query batch over 2M x 768 spent 44 ms of device-thread time in the server against 5 ms in
process (~100 calls a batch).  On this 2-core CPU, 100 tiny torch calls took 0.33 ms alone and 10.2 ms
beside a thread busy in Python; as one scripted function, 1.85 ms.  A scripted function runs its whole
op sequence after one release.

TorchScript is deprecated in favour of torch.compile, which still returns to Python between its graphs
and compiles per shape; the functions scripted here are plain enough to become C++ ops should it go.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch

log = logging.getLogger("arrwdb.kernels")

R = TypeVar("R")


class Scripted(Generic[R]):
    """``fn`` compiled by TorchScript on first use, and run eagerly (the same Python function) if the
    script ever fails where the eager function does not."""

    def __init__(self, fn: Callable[..., R]) -> None:
        self.fn = fn
        self.failure: BaseException | None = None
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def compiled(self) -> Callable[..., R]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(self.fn)

    def __call__(self, *args: Any) -> R:
        if self.failure is not None:
            return self.fn(*args)
        try:
            # Plain interpretation: no profiling runs, no re-specialising per batch shape, no fusers.
            with torch.jit.optimized_execution(False):
                return self.compiled(*args)
        except RuntimeError as exc:
            # TorchScript re-raises every error as a RuntimeError, a CUDA out-of-memory error too (which
            # callers split batches on).  The eager function raises it with its own type; if it succeeds
            # where the script failed (not for lack of memory), the script is not used again.
            result = self.fn(*args)
            if "out of memory" not in str(exc):
                self.failure = exc
                log.warning("%s runs eagerly from now on: its TorchScript version failed (%s)", self.fn.__name__, exc)
            return result
