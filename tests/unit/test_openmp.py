"""The server's OpenMP runtime does not spin (arrwdb.runtime.openmp), and a FAISS search leaves the calling
thread's OpenMP thread count as it found it (the count is shared with torch on the device worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from arrwdb.index import faiss_ops, faiss_search  # noqa: E402

# Runs in a fresh interpreter (the runtime reads its settings once, when it loads): optionally the
# server's configuration, then a 2-thread FAISS search every 20 ms; prints the CPU seconds the process
# used while it slept between searches, per search.
_IDLE_CPU_PROBE = textwrap.dedent(
    """
    import sys, time
    if sys.argv[1] == "serving":
        from arrwdb.runtime.openmp import configure_for_serving
        assert configure_for_serving()
    import torch  # noqa: F401  (loads the runtime first, as in the server)
    import faiss
    import numpy as np

    vectors = np.random.default_rng(0).standard_normal((4000, 16)).astype("float32")
    index = faiss.IndexHNSWFlat(16, 16)
    index.add(vectors)
    faiss.omp_set_num_threads(2)
    idle = 0.0
    for _ in range(25):
        index.search(vectors[:64], 10)
        started = time.process_time()
        time.sleep(0.02)
        idle += time.process_time() - started
    print(idle / 25)
    """
)


def _idle_cpu_per_search(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    if mode == "default":
        env["GOMP_SPINCOUNT"] = "300000"  # libgomp's own default, stated so that the comparison is explicit
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_CPU_PROBE, mode], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


def test_the_serving_runtime_sleeps_between_searches_where_the_default_spins() -> None:
    default = _idle_cpu_per_search("default")
    serving = _idle_cpu_per_search("serving")
    # Measured on 2 cores: ~2.5 ms of a core spun after each search by default, ~0.03 ms when serving.
    assert default > 0.0005, f"libgomp's default did not spin here ({default * 1e3:.3f} ms): the probe shows nothing"
    assert serving < default / 4, f"serving {serving * 1e3:.3f} ms vs default {default * 1e3:.3f} ms per search"


def _configure_in_fresh_interpreter(env_extra: dict[str, str], preload: str = "") -> str:
    code = f"{preload}\nimport os\nfrom arrwdb.runtime.openmp import configure_for_serving\n"
    code += "print(configure_for_serving(), os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_configuration_sets_the_spin_count_only_when_nobody_chose_one() -> None:
    assert _configure_in_fresh_interpreter({}) == "True 0"
    assert _configure_in_fresh_interpreter({"GOMP_SPINCOUNT": "1000"}) == "False 1000"
    assert _configure_in_fresh_interpreter({"OMP_WAIT_POLICY": "active"}) == "False None"
    # Too late once the runtime is loaded: it read its settings then.
    assert _configure_in_fresh_interpreter({}, preload="import torch") == "False None"


@pytest.mark.parametrize("queries", [1, 5])
def test_a_search_restores_the_callers_thread_count(queries: int) -> None:
    vectors = np.random.default_rng(1).standard_normal((500, 8)).astype(np.float32)
    index = faiss_ops.build("hnsw", {}, "l2", np.arange(1, 501, dtype=np.int64), vectors)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        scores, ids = faiss_search.search(
            index, "hnsw", "l2", vectors[:queries], 3, ef_search=16, nprobe=None, selector=None
        )
        assert faiss.omp_get_max_threads() == 1
        assert ids[:, 0].tolist() == list(range(1, queries + 1))  # each vector finds itself first
        assert np.all(scores[:, 0] == 0.0)
    finally:
        faiss.omp_set_num_threads(before)
