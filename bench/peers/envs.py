"""One venv per peer under ``.peers/``, created with pip on first use and reused after.

Why separate venvs: Chroma, Milvus Lite and Infinity pin their own fastapi, numpy, onnxruntime,
tokenizers and torch; installed into arrwdb's venv they would change what arrwdb is measured with.
A venv is marked complete only after its imports work, so a failed install is retried next run, and
the reason (pip's last lines) ends up in the benchmark's output.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here; the message says exactly why."""


@dataclass(frozen=True)
class PeerEnv:
    name: str
    # Installed in order, one pip call each: torch first, pinned to the version arrwdb runs with, so
    # that pip takes the local CPU wheel instead of a multi-GB CUDA build as a dependency.
    steps: tuple[tuple[str, ...], ...]
    check: str  # a Python statement that must run in the venv, e.g. "import chromadb"

    def key(self) -> str:
        return hashlib.sha256(repr((self.steps, self.check)).encode()).hexdigest()[:12]


def _torch_pin() -> str:
    from importlib import metadata

    try:
        return f"torch=={metadata.version('torch').split('+', 1)[0]}"
    except metadata.PackageNotFoundError:
        return "torch"


def chroma_env() -> PeerEnv:
    return PeerEnv("chroma", (("chromadb",),), "import chromadb")


def milvus_env() -> PeerEnv:
    return PeerEnv("milvus", (("pymilvus", "milvus-lite", "numpy"),), "import pymilvus, milvus_lite, numpy")


def infinity_env() -> PeerEnv:
    torch = _torch_pin()
    return PeerEnv("infinity", ((torch,), ("infinity-emb[server,torch]", torch)), "import infinity_emb, torch")


def _base_python() -> str:
    # The interpreter arrwdb's own venv was made from: a venv made from a venv's python works too,
    # but this keeps the peer's venv independent of arrwdb's.
    return getattr(sys, "_base_executable", None) or sys.executable


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    useful = [line for line in text if "is ignored: it is neither a file nor a directory" not in line]
    return "\n".join(useful[-lines:])


def venv_python(env: PeerEnv, root: Path) -> Path:
    return root / f"{env.name}-venv" / "bin" / "python"


def ensure(env: PeerEnv, root: Path, timeout_s: float = 1800.0) -> Path:
    """The venv's python, installing it first if needed; raises PeerUnavailable with pip's reason."""
    venv = root / f"{env.name}-venv"
    python = venv / "bin" / "python"
    marker = venv / f".arrwdb-ready-{env.key()}"
    if marker.exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"{env.name}-install.log"
    if venv.exists():
        shutil.rmtree(venv)  # a half-made or outdated venv: start clean
    commands = [[_base_python(), "-m", "venv", str(venv)]]
    commands += [[str(python), "-m", "pip", "install", "--disable-pip-version-check", *step] for step in env.steps]
    with open(log, "w") as out:
        for command in commands:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            try:
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise PeerUnavailable(f"{env.name}: `{' '.join(command)}` took over {timeout_s:.0f} s") from exc
            if done.returncode != 0:
                raise PeerUnavailable(
                    f"{env.name}: `{' '.join(command)}` failed (exit {done.returncode}); see {log}:\n{_tail(log)}"
                )
    check = subprocess.run([str(python), "-c", env.check], capture_output=True, text=True, timeout=300)
    if check.returncode != 0:
        raise PeerUnavailable(f"{env.name}: installed, but `{env.check}` fails:\n{check.stderr.strip()[-1500:]}")
    marker.touch()
    return python
