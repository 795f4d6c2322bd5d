"""``arrwdb serve`` with HTTP worker processes: the parent process starts one engine process and N
HTTP workers, watches them, restarts one that ends, and stops them all on SIGTERM or SIGINT.

The parent binds the port once (a socket it never listens on, so that the port is the server's and a
port of 0 is resolved once); each worker listens on the same port with ``SO_REUSEPORT``.  The engine,
the workers and the parent share a run folder: the engine's ZMQ socket, the board
(``arrwdb.ipc.board``) and the workers' metrics.  Children die with the parent (a parent-death
signal), so even ``kill -9`` of the parent leaves no process of the server running.

Stopping: the workers first (each answers the requests it holds, which need the engine), then the
engine (which finishes what it holds and closes the store).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from arrwdb.config import Settings
from arrwdb.ipc.board import Board

log = logging.getLogger("arrwdb.server")

_WORKER_STOP_S = 15.0  # a worker's graceful shutdown (uvicorn's is 10 s) before it is killed
_RUN_PREFIX = "arrwdb-run-"  # run folders are named after their parent's pid
_RESTART_PAUSE_S = 0.5  # between a child's end and its restart, so a child that fails at once cannot spin


class Supervisor:
    def __init__(self, settings: Settings, workers: int, auth_enabled: bool, cluster: bool = False) -> None:
        """``cluster``: the engines are Ray actors (``--ray``), already placed; no engine process here,
        and each worker is a frontend of the cluster (``server/cluster_app.py``)."""
        from arrwdb.server.worker_main import listening_socket

        self.settings = settings
        self.worker_count = workers
        self.auth_enabled = auth_enabled  # decided once from the store (server/auth_startup.py)
        self.cluster = cluster
        _remove_stale_run_dirs()
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{_RUN_PREFIX}{os.getpid()}-"))
        self.endpoint = f"ipc://{self.run_dir / 'engine.sock'}"
        self.board_path = self.run_dir / "board"
        self.board = Board(self.board_path, create=True)
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        self.port_holder = listening_socket(settings.host, settings.port, listen=False)
        self.port = int(self.port_holder.getsockname()[1])
        self.context = multiprocessing.get_context("spawn")
        self.generation = 0
        self.engine: BaseProcess | None = None
        self.workers: list[BaseProcess | None] = [None] * workers
        self.stopping = threading.Event()

    # -- children ----------------------------------------------------------------------------------

    def _start_engine(self) -> None:
        if self.cluster:
            return
        from arrwdb.ipc.service import run_engine

        self.generation += 1
        self.board.engine_starting(self.generation)
        args = (self.settings, self.endpoint, self.board_path, self.generation)
        process = self.context.Process(target=run_engine, args=args, name="arrwdb-engine")
        process.start()
        self.engine = process

    def _start_worker(self, index: int) -> None:
        from arrwdb.server.worker_main import run_cluster_worker, run_worker

        if self.cluster:
            cluster_args = (self.settings, self.port, str(self.metrics_dir), self.auth_enabled)
            process = self.context.Process(target=run_cluster_worker, args=cluster_args, name=f"arrwdb-http-{index}")
            process.start()
            self.workers[index] = process
            return
        args = (
            self.settings,
            self.port,
            self.endpoint,
            self.board_path,
            str(self.metrics_dir),
            self.auth_enabled,
            self.worker_count,
        )
        process = self.context.Process(target=run_worker, args=args, name=f"arrwdb-http-{index}")
        process.start()
        self.workers[index] = process

    def pids(self) -> dict[str, int | None]:
        found = {"engine": None if self.engine is None else self.engine.pid}
        for index, worker in enumerate(self.workers):
            found[f"http-{index}"] = None if worker is None else worker.pid
        return found

    # -- the watch -----------------------------------------------------------------------------------

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        log.info(
            "serving on http://%s:%d with %d HTTP worker processes and %s (run folder %s)",
            self.settings.host,
            self.port,
            self.worker_count,
            "engines on Ray" if self.cluster else "one engine process",
            self.run_dir,
        )
        try:
            self._start_engine()
            for index in range(self.worker_count):
                self._start_worker(index)
            while not self.stopping.is_set():
                self._watch_once()
        finally:
            self._stop_all()

    def _watch_once(self) -> None:
        children = [p for p in (self.engine, *self.workers) if p is not None]
        wait([p.sentinel for p in children], timeout=0.2)
        if self.stopping.is_set():
            return
        engine = self.engine
        if engine is not None and not engine.is_alive():
            self.board.engine_down()  # every worker answers 503 from now on, and fails what it waits for
            log.error("the engine process ended (exit code %s): restarting it", engine.exitcode)
            time.sleep(_RESTART_PAUSE_S)
            self._start_engine()
        for index, worker in enumerate(self.workers):
            if worker is not None and not worker.is_alive():
                log.error("HTTP worker %d ended (exit code %s): restarting it", index, worker.exitcode)
                self._forget_metrics_of(worker.pid)
                time.sleep(_RESTART_PAUSE_S)
                self._start_worker(index)

    def _forget_metrics_of(self, pid: int | None) -> None:
        if pid is None:
            return
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.metrics_dir))

    def _stop_all(self) -> None:
        log.info("stopping: HTTP workers first, then the engine")
        workers = [w for w in self.workers if w is not None]
        _stop(workers, _WORKER_STOP_S)
        if self.engine is not None:
            _stop([self.engine], self.settings.request_timeout_ms / 1000.0 + 15.0)
        self.port_holder.close()
        self.board.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _stop(processes: list[BaseProcess], grace_s: float) -> None:
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.error("%s did not stop within %.0f s: killing it", process.name, grace_s)
            process.kill()
            process.join(5)


def _remove_stale_run_dirs() -> None:
    """Run folders of parents that died without cleaning up (``kill -9``): their pid is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_RUN_PREFIX}*"):
        pid = folder.name[len(_RUN_PREFIX) :].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def run_server(settings: Settings, workers: int, auth_enabled: bool, cluster: bool = False) -> None:
    Supervisor(settings, workers, auth_enabled, cluster).run()
