"""What a newcomer sees at start: `make run` installs only what serving needs, and loading FAISS
prints no line about modules it could not find."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pip_installs(target: str, tmp_path: Path) -> list[str]:
    # -n prints the recipes without running them (the nested `$(MAKE) install` is printed too).
    venv = tmp_path / "venv"
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r'pip install .*-e "\.\[([^\]]*)\]"', out)


def test_make_run_installs_the_cpu_extra_only(tmp_path: Path) -> None:
    assert _pip_installs("run", tmp_path) == ["cpu"]


def test_make_test_keeps_the_test_tools(tmp_path: Path) -> None:
    assert _pip_installs("test", tmp_path) == ["cpu,dev"]


def test_faiss_loader_prints_no_module_not_found(tmp_path: Path) -> None:
    # A fresh interpreter: FAISS logs while it loads, once a process.
    probe = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from arrwdb.index import faiss_ops\n"
        "print(faiss_ops.faiss_module().__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "faiss"
    assert "ModuleNotFoundError" not in result.stderr
    assert "faiss.loader" not in result.stderr
