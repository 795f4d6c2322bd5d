"""Load against a real ``arrwdb serve`` (one process for the module): a short soak, overload at twice
the saturating rate, and idle / slow connections.  Bounds are generous: the machines that run this
are small and shared; the figures of the long runs are in docs/RELIABILITY.md."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.reliability.load import percentile
from tests.reliability.overload import run_overload, server_env
from tests.reliability.server import KillableServer
from tests.reliability.soak import MAX_GROWTH, Pools, soak

HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def load_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("load")
    server = KillableServer(data / "data", env=server_env(HEADER_TIMEOUT_S), log_path=data / "server.log").start()
    yield server
    server.stop()


def test_the_served_process_reports_when_start_up_work_has_settled(load_server):
    # `arrwdb serve` moves its start-up objects out of the cyclic GC once loading is done, and says so
    # on /metrics: benchmarks wait for it so that the one-off pause is not measured.
    load_server.wait_settled(timeout=120)
    lines = httpx.get(f"{load_server.url}/metrics").text.splitlines()
    (frozen,) = [float(line.split()[1]) for line in lines if line.startswith("arrwdb_gc_frozen_objects ")]
    assert frozen > 10_000  # torch, FastAPI and the rest of a loaded server


def test_soak_memory_levels_off_and_nothing_fails(load_server):
    report = soak(load_server.url, load_server.pid, seconds=25, warmup=8, pools=Pools(), clients=4)
    print(f"soak: {report.as_dict()}")
    assert report.errors == []
    assert report.requests > 50
    assert report.growth < MAX_GROWTH, report.as_dict()


def test_overload_at_twice_saturation_answers_429_fast_and_recovers(load_server):
    report = run_overload(load_server.url, load_server.pid, seconds=8)
    summary = report.as_dict()
    assert report.capacity_rps > 0 and report.skipped_arrivals == 0, summary
    assert set(report.statuses) <= {200, 429}, summary  # no 5xx, no timeouts, no dropped connections
    assert report.statuses[429] >= 0.1 * sum(report.statuses.values()), summary
    assert report.retry_after_present, summary
    assert report.rejected_p95_ms < 500, summary  # refused at once, not after queueing
    assert report.goodput_rps >= 0.3 * report.capacity_rps, summary  # it keeps working meanwhile
    assert report.health_p50_ms < 50 and report.health_max_ms < 1000, summary
    assert report.rss_after_mib - report.rss_before_mib < 100, summary  # the queue is bounded, so is memory
    assert report.recovery_statuses == [200, 200, 200], summary  # served at once when the load is gone
    assert report.recovery_max_s < max(3.0, 3 * report.served_p50_s), summary


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed this connection (FIN or RST)."""
    sock.settimeout(0.05)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_idle_and_slow_connections_do_not_starve_others(load_server):
    address = ("127.0.0.1", load_server.port)
    idle = [socket.create_connection(address) for _ in range(200)]
    slow_headers = [socket.create_connection(address) for _ in range(50)]
    slow_bodies = [socket.create_connection(address) for _ in range(20)]
    try:
        for sock in slow_headers:
            sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\n")
        for sock in slow_bodies:
            sock.sendall(
                b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Request-Timeout-Ms: 1500\r\nContent-Length: 100000\r\n\r\n" + b'{"texts": ["'
            )
        latencies = []
        started = time.monotonic()
        with httpx.Client(base_url=load_server.url, timeout=30) as http:
            while time.monotonic() - started < HEADER_TIMEOUT_S + 1.5:
                for sock in slow_headers:  # a byte now and then: never a complete header
                    try:
                        sock.send(b"X")
                    except OSError:
                        pass
                for sock in slow_bodies:
                    try:
                        sock.send(b"a")
                    except OSError:
                        pass
                t0 = time.monotonic()
                assert http.get("/health").status_code == 200
                latencies.append(time.monotonic() - t0)
                response = http.post("/v1/embed", json={"texts": ["served while others stall"]})
                assert response.status_code == 200
                time.sleep(0.25)
        assert percentile(latencies, 95) < 0.5, latencies
        assert all(_closed(sock) for sock in idle), "idle connections outlived the header deadline"
        assert all(_closed(sock) for sock in slow_headers), "slowloris connections outlived the header deadline"
        answers = []
        for sock in slow_bodies:
            sock.settimeout(5)
            answers.append(sock.recv(65536))
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    finally:
        for sock in idle + slow_headers + slow_bodies:
            sock.close()
