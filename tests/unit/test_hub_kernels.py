"""arrwdb's top-level kernels/ folder must not stand in for Hugging Face's `kernels` package, which
transformers >= 5.25 imports: a process started in the checkout's root has that root on sys.path."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import arrwdb.kernels

ROOT = Path(arrwdb.kernels.__file__).resolve().parent.parent

PROBE = """
import sys
from arrwdb.embed.hub_kernels import load_hub_kernels_first
load_hub_kernels_first()
module = sys.modules.get("kernels")
print(getattr(module, "__file__", None) if module is not None else "absent")
"""


def _installed() -> bool:
    try:
        importlib.metadata.version("kernels")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_installed_package_takes_the_name_even_from_the_checkout_root() -> None:
    # `python -c` puts the working directory first on sys.path, as `python -m arrwdb.cli` does.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = result.stdout.strip().splitlines()[-1]
    if _installed():
        assert loaded != "absent"
        assert not Path(loaded).resolve().is_relative_to(ROOT / "kernels"), loaded
    else:
        assert loaded == "absent"  # nothing imported under that name: our folder is left alone


def test_a_model_loads_from_the_checkout_root() -> None:
    """The failure this guards against: transformers' BERT module imported from the checkout's root."""
    probe = "from arrwdb.embed.hub_kernels import load_hub_kernels_first\nload_hub_kernels_first()\n"
    probe += "from transformers import BertModel\nprint(BertModel.__name__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("BertModel")
