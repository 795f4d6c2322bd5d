"""Fixtures of the console's browser tests: Debian's chromium driven by Selenium through chromedriver,
and real ``arrwdb serve`` processes on loopback ports.  Nothing is downloaded: without a chromium
binary the tests are skipped and say so."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arrwdb.bench.model_dirs import save_cross_encoder
from arrwdb.bench.serverproc import ServerProcess

KEY = "console-test-key"
RERANKER = "tiny-reranker"
ROOT = Path(__file__).resolve().parents[2]
# Where screenshots and the first-paint figures go (CONSOLE_RESULTS overrides; docs/CONSOLE.md).
RESULTS = Path(os.environ.get("CONSOLE_RESULTS", ROOT / "tests" / "browser" / "results"))
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    named = os.environ.get("CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return next((found for name in _CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def results_dir() -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        # These tests run only when asked for (make console-test): without a browser they fail, never pass.
        pytest.fail("no chromium binary on PATH: apt-get install chromium chromium-driver (or set CHROMIUM)")
    driver_path = shutil.which("chromedriver")
    assert driver_path, f"chromium is at {binary} but chromedriver is not on PATH: apt-get install chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _serve(data_dir: Path, **env: str) -> ServerProcess:
    base = {"ARRWDB_DEVICE": "cpu", "ARRWDB_LOG_LEVEL": "warning", "ARRWDB_WORKERS": "0"}
    return ServerProcess(data_dir, env={**base, **env}, log_path=data_dir.parent / f"{data_dir.name}.log").start()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[ServerProcess]:
    """A server with auth on (``KEY``) and a reranker (``RERANKER``: a tiny cross-encoder with seeded
    random weights); started only once a browser is there to use it."""
    reranker = save_cross_encoder(tmp_path_factory.mktemp("rerank") / "tiny", hidden=64, layers=2, heads=2, seed=3)
    server = _serve(
        tmp_path_factory.mktemp("console") / "data", ARRWDB_API_KEYS=KEY, ARRWDB_RERANK_MODEL=f"{RERANKER}={reranker}"
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[ServerProcess]:
    """A server with auth off."""
    server = _serve(tmp_path_factory.mktemp("console-open") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(keyed_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_server.url, headers={"X-API-Key": KEY}, timeout=60) as client:
        yield client
