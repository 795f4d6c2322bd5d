"""Keeps arrwdb's `kernels/` folder from standing in for Hugging Face's `kernels` package.

transformers (5.25 and later) depends on the PyPI package `kernels` and imports it as soon as a model
module loads.  A checkout of arrwdb has a folder named `kernels/` at its top (installed as
arrwdb.kernels, DESIGN.md's layout), so wherever the checkout's root is on ``sys.path`` (`python -m
arrwdb.cli` run from it, pytest, which puts the root there for the `tests` package) `import kernels`
finds that folder and transformers fails with "cannot import name 'CUDAProperties' from 'kernels'".

Call :func:`load_hub_kernels_first` before importing transformers: it imports the installed package
with the checkout's root hidden, so the name is taken by the right module before transformers asks.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_NAME = "kernels"


def _our_kernels_folder() -> Path:
    import arrwdb.kernels  # no torch work at import: it defines functions only

    return Path(arrwdb.kernels.__file__).resolve().parent


def _resolved(entry: str) -> Path | None:
    try:
        return Path(entry or ".").resolve()
    except OSError:
        return None


def load_hub_kernels_first() -> None:
    """Import the installed `kernels` package (if one is installed and our folder would shadow it)."""
    if _NAME in sys.modules:
        return
    spec = importlib.util.find_spec(_NAME)
    if spec is None or spec.origin is None:
        return  # nothing of that name can be imported: transformers runs without hub kernels
    ours = _our_kernels_folder()
    if Path(spec.origin).resolve().parent != ours:
        return  # the name already finds the installed package
    root = ours.parent
    saved = list(sys.path)
    sys.path[:] = [entry for entry in saved if _resolved(entry) != root]
    try:
        importlib.import_module(_NAME)
    except ImportError:
        pass  # not installed: transformers sees no version for our folder and leaves hub kernels off
    finally:
        sys.path[:] = saved
