"""The web console in a real headless chromium against real ``arrwdb serve`` processes: every view
renders, the key is typed once, a search shows hits and timing headers, documents are added from the
form and from a JSONL file, the live batching view moves under load, the cluster view renders, and
markup in document text and metadata shows as text without running."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from arrwdb.server import console
from tests.browser.conftest import KEY, RERANKER

LIBRARY = "poems"
SCRIPT_TEXT = "<script>window.__xss = 'script'</script> a poem about the sea"
IMG_TEXT = "<img src=x onerror=\"window.__xss = 'img'\">"
XSS_ID = "xss-doc"
WAIT_S = 30
CONSOLE_FILES = [console.CONSOLE_DIR / console.PAGE, *(console.CONSOLE_DIR / name for name in console.ASSETS)]


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT_S) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def view_ready(driver: Any, view: str) -> None:
    def ready(d: Any) -> bool:
        main = d.find_element(By.ID, "view")
        return main.get_attribute("data-view") == view and main.get_attribute("data-state") == "ready"

    wait_for(driver, ready)


def go(driver: Any, server: Any, address: str, view: str) -> None:
    driver.get(f"{server.url}/console{address}")
    view_ready(driver, view)


def sign_in(driver: Any, server: Any) -> None:
    """Type the key into the console's key box (kept for the tab's session)."""
    driver.get(f"{server.url}/console")
    form = driver.find_element(By.ID, "key-form")
    wait_for(driver, lambda d: form.is_displayed())
    box = driver.find_element(By.ID, "key-input")
    box.clear()
    box.send_keys(KEY)
    driver.find_element(By.ID, "key-save").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "key-status").text == "key accepted")
    view_ready(driver, "libraries")


def text_of(driver: Any, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def nothing_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__xss === undefined"), "injected markup ran"
    assert driver.find_elements(By.CSS_SELECTOR, "#view script, #view img") == []


def page_errors(driver: Any) -> list[str]:
    """Errors the page logged since the last call, apart from answers the console expects (the 401
    of the auth probe, the 404 of a server without a cluster)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


@pytest.fixture(scope="module")
def seeded(api: httpx.Client) -> None:
    assert api.post("/v1/libraries", json={"name": LIBRARY}).status_code == 201
    documents = [
        {"id": f"poem-{i}", "title": f"Poem {i}", "text": text, "metadata": {"year": 1800 + i, "kind": kind}}
        for i, (text, kind) in enumerate(
            [
                ("The sea was calm and the ships sailed home at dusk", "sea"),
                ("A mountain of snow stood above the quiet valley", "land"),
                ("Waves broke on the harbour wall all night long", "sea"),
                ("The wheat field turned gold in the late summer sun", "land"),
                ("Sailors sang of distant islands and salt wind", "sea"),
            ]
        )
    ]
    documents.append(
        {
            "id": XSS_ID,
            "title": IMG_TEXT,
            "text": SCRIPT_TEXT,
            "metadata": {"note": IMG_TEXT, "tag": "<script>x()</script>"},
        }
    )
    answer = api.post(f"/v1/libraries/{LIBRARY}/documents/batch", json={"documents": documents})
    assert answer.status_code == 201, answer.text


def test_the_console_asks_for_a_key_and_works_once_it_has_one(browser, keyed_server, seeded, results_dir):
    browser.get(f"{keyed_server.url}/console")
    wait_for(browser, lambda d: d.find_element(By.ID, "view").get_attribute("data-state") == "error")
    assert "needs an API key" in text_of(browser, "#view")
    assert browser.find_element(By.ID, "key-form").is_displayed()
    sign_in(browser, keyed_server)
    assert LIBRARY in text_of(browser, "#libraries-table")
    # Kept for the session: a reload works without typing it again.
    browser.refresh()
    view_ready(browser, "libraries")
    assert LIBRARY in text_of(browser, "#libraries-table")
    browser.save_screenshot(str(results_dir / "console-libraries.png"))
    assert page_errors(browser) == []


def test_every_view_renders(browser, keyed_server, seeded, results_dir):
    sign_in(browser, keyed_server)
    views = [
        ("#/libraries", "libraries", "#libraries-table", LIBRARY),
        (f"#/libraries/{LIBRARY}", "library", "#library-statistics", "document_count"),
        (f"#/libraries/{LIBRARY}/documents", "documents", "#documents-table", "poem-0"),
        (f"#/libraries/{LIBRARY}/documents/poem-1", "document", "#document-text", "mountain of snow"),
        (f"#/search?library={LIBRARY}", "search", "#search-form", "Mode"),
        ("#/batching", "batching", "#latency-table", "p99"),
    ]
    for address, view, selector, expected in views:
        go(browser, keyed_server, address, view)
        assert expected in text_of(browser, selector), address
        browser.save_screenshot(str(results_dir / f"console-{view}.png"))
    statistics_text = text_of(browser, "#nav")  # the nav stays on every view
    assert "Live batching" in statistics_text
    # The cluster view renders GET /v1/cluster, or says that the server runs without one.
    go(browser, keyed_server, "#/cluster", "cluster")
    cluster = httpx.get(f"{keyed_server.url}/v1/cluster", headers={"X-API-Key": KEY})
    if cluster.status_code == 404:
        assert "runs without a cluster" in text_of(browser, "#no-cluster")
    else:
        engines = cluster.json()["engines"]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#cluster-engines .engine")) == len(engines)
    browser.save_screenshot(str(results_dir / "console-cluster.png"))
    go(browser, keyed_server, "#/no/such/view", "missing")
    assert page_errors(browser) == []


def test_markup_in_documents_shows_as_text_and_nothing_runs(browser, keyed_server, seeded, results_dir):
    sign_in(browser, keyed_server)
    go(browser, keyed_server, f"#/libraries/{LIBRARY}/documents", "documents")
    row = text_of(browser, f'tr[data-document="{XSS_ID}"]')
    assert "<script>window.__xss = 'script'</script>" in row
    assert IMG_TEXT in row
    assert "<script>x()</script>" in row
    nothing_ran(browser)
    go(browser, keyed_server, f"#/libraries/{LIBRARY}/documents/{XSS_ID}", "document")
    assert text_of(browser, "#document-text") == SCRIPT_TEXT
    assert text_of(browser, "#document-title") == IMG_TEXT
    assert IMG_TEXT in text_of(browser, "#document-metadata")
    browser.save_screenshot(str(results_dir / "console-xss-document.png"))
    nothing_ran(browser)
    # In search hits too.
    go(browser, keyed_server, f"#/search?library={LIBRARY}", "search")
    browser.find_element(By.ID, "search-query").send_keys("a poem about the sea")
    browser.find_element(By.ID, "search-submit").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "search-output").get_attribute("data-state") == "done")
    assert SCRIPT_TEXT in text_of(browser, "#hits-table")
    nothing_ran(browser)
    time.sleep(0.5)  # an onerror handler would run on the next tasks
    nothing_ran(browser)
    assert page_errors(browser) == []


def test_a_search_from_the_playground_shows_hits_and_timing_headers(browser, keyed_server, seeded, results_dir):
    sign_in(browser, keyed_server)
    go(browser, keyed_server, f"#/search?library={LIBRARY}", "search")
    browser.find_element(By.ID, "search-query").send_keys("ships at sea")
    browser.find_element(By.ID, "search-submit").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "search-output").get_attribute("data-state") == "done")
    hits = browser.find_elements(By.CSS_SELECTOR, "#hits-table tr.hit")
    assert len(hits) == 6  # every document of the library, best first
    scores = [float(hit.find_element(By.CSS_SELECTOR, ".score").text) for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert "poem-0" in hits[0].text  # "The sea was calm and the ships sailed home"
    timings = {
        element.get_attribute("data-timing"): element.text
        for element in browser.find_elements(By.CSS_SELECTOR, "#search-timings dd")
    }
    assert int(timings["X-Batch-Size"]) >= 1
    assert float(timings["X-Queue-Ms"]) >= 0 and float(timings["X-Compute-Ms"]) > 0
    browser.save_screenshot(str(results_dir / "console-search-hits.png"))

    # Hybrid, with a filter built in the filter editor: only "sea" poems, fused scores.
    browser.find_element(By.CSS_SELECTOR, "#search-mode option[value=hybrid]").click()
    browser.find_element(By.ID, "filter-field").send_keys("kind")
    browser.find_element(By.ID, "filter-value").send_keys("sea")
    browser.find_element(By.ID, "filter-add").click()
    assert json.loads(browser.find_element(By.ID, "filter-json").get_attribute("value")) == {"kind": {"$eq": "sea"}}
    browser.find_element(By.ID, "search-submit").click()
    wait_for(browser, lambda d: "hybrid" in d.find_element(By.ID, "search-request").get_attribute("textContent"))
    wait_for(browser, lambda d: d.find_element(By.ID, "search-output").get_attribute("data-state") == "done")
    hits = browser.find_elements(By.CSS_SELECTOR, "#hits-table tr.hit")
    assert 1 <= len(hits) <= 3
    assert all('"kind":"sea"' in hit.text for hit in hits)

    # Grouped by a metadata field: one section per group.
    browser.find_element(By.ID, "filter-clear").click()
    browser.find_element(By.CSS_SELECTOR, "#search-mode option[value=vector]").click()
    browser.find_element(By.ID, "search-group-by").send_keys("kind")
    browser.find_element(By.ID, "search-group-size").send_keys("2")
    browser.find_element(By.ID, "search-submit").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results section.group"))
    groups = browser.find_elements(By.CSS_SELECTOR, "#search-results section.group")
    assert {group.find_element(By.TAG_NAME, "h3").text for group in groups} >= {'group "sea"', 'group "land"'}
    assert all(1 <= len(group.find_elements(By.CSS_SELECTOR, "tr.hit")) <= 2 for group in groups)

    # Reranked by the configured cross-encoder, which the form offers by name.
    browser.find_element(By.ID, "search-group-by").clear()
    assert browser.find_element(By.ID, "search-rerank-model").get_attribute("value") == RERANKER
    browser.find_element(By.ID, "search-rerank").send_keys("6")
    browser.find_element(By.ID, "search-submit").click()
    wait_for(browser, lambda d: RERANKER in d.find_element(By.ID, "search-request").get_attribute("textContent"))
    wait_for(browser, lambda d: d.find_element(By.ID, "search-output").get_attribute("data-state") == "done")
    reranked = [float(hit.text) for hit in browser.find_elements(By.CSS_SELECTOR, "#hits-table .score")]
    assert len(reranked) == 6 and reranked == sorted(reranked, reverse=True)
    browser.find_element(By.ID, "search-rerank").clear()

    # A vector of the wrong dimension: the API's error is shown, not a blank page.
    browser.find_element(By.CSS_SELECTOR, "#search-mode option[value=vector]").click()
    browser.find_element(By.CSS_SELECTOR, "#search-kind option[value=vector]").click()
    browser.find_element(By.ID, "search-vector").send_keys("[1, 2, 3]")
    browser.find_element(By.ID, "search-submit").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "search-output").get_attribute("data-state") == "error")
    assert text_of(browser, "#search-output").startswith("422 ")
    assert page_errors(browser) == []


def test_documents_are_added_from_the_form_and_a_jsonl_file(browser, keyed_server, api, seeded, tmp_path):
    sign_in(browser, keyed_server)
    go(browser, keyed_server, f"#/libraries/{LIBRARY}/documents", "documents")
    browser.find_element(By.ID, "doc-id").send_keys("from-form")
    browser.find_element(By.ID, "doc-title").send_keys("Typed in")
    browser.find_element(By.ID, "doc-text").send_keys("A document typed into the console's form")
    browser.find_element(By.ID, "doc-metadata").send_keys('{"kind": "form"}')
    browser.find_element(By.CSS_SELECTOR, "#add-document button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-document="from-form"]'))
    assert api.get(f"/v1/libraries/{LIBRARY}/documents/from-form").json()["metadata"] == {"kind": "form"}

    lines = [json.dumps({"id": f"bulk-{i}", "text": f"bulk line number {i}", "metadata": {"n": i}}) for i in range(300)]
    upload = tmp_path / "documents.jsonl"
    upload.write_text("\n".join(lines) + "\n")
    browser.find_element(By.ID, "jsonl-file").send_keys(str(upload))
    browser.find_element(By.CSS_SELECTOR, "#upload-jsonl button[type=submit]").click()
    wait_for(browser, lambda d: "Added 300 documents" in d.find_element(By.ID, "view").text, timeout=120)
    assert api.get(f"/v1/libraries/{LIBRARY}").json()["document_count"] == 6 + 1 + 300
    assert api.get(f"/v1/libraries/{LIBRARY}/documents/bulk-299").json()["metadata"] == {"n": 299}

    # Cursor pages: the next page's link leads to other documents.
    go(browser, keyed_server, f"#/libraries/{LIBRARY}/documents?limit=10", "documents")
    first = [row.get_attribute("data-document") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-document]")]
    assert len(first) == 10
    browser.find_element(By.ID, "next-page").click()
    wait_for(browser, lambda d: "cursor=" in d.current_url)
    view_ready(browser, "documents")
    wait_for(browser, lambda d: d.find_element(By.ID, "first-page"))
    second = [row.get_attribute("data-document") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-document]")]
    assert len(second) == 10 and not set(first) & set(second)

    # A broken file is refused before anything is sent.
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\nnot json\n')
    go(browser, keyed_server, f"#/libraries/{LIBRARY}/documents", "documents")
    browser.find_element(By.ID, "jsonl-file").send_keys(str(broken))
    browser.find_element(By.CSS_SELECTOR, "#upload-jsonl button[type=submit]").click()
    wait_for(browser, lambda d: "line 2" in d.find_element(By.ID, "jsonl-status").text)
    assert api.get(f"/v1/libraries/{LIBRARY}").json()["document_count"] == 307
    assert page_errors(browser) == []


def test_libraries_are_created_and_deleted_from_the_console(browser, keyed_server, api, seeded):
    sign_in(browser, keyed_server)
    browser.find_element(By.ID, "new-library-name").send_keys("scratch")
    browser.find_element(By.CSS_SELECTOR, "#new-library-index option[value=hnsw]").click()
    browser.find_element(By.CSS_SELECTOR, "#create-library button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-library="scratch"]'))
    assert api.get("/v1/libraries/scratch").json()["index_type"] == "hnsw"
    # A duplicate name: the API's 409 is shown.
    browser.find_element(By.ID, "new-library-name").send_keys("scratch")
    browser.find_element(By.CSS_SELECTOR, "#create-library button[type=submit]").click()
    wait_for(browser, lambda d: "409" in d.find_element(By.ID, "create-library").text)
    delete = browser.find_element(By.CSS_SELECTOR, 'tr[data-library="scratch"] button.danger')
    delete.click()
    assert "Confirm" in delete.text
    delete.click()
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, 'tr[data-library="scratch"]'))
    assert api.get("/v1/libraries/scratch").status_code == 404
    assert page_errors(browser) == []


def _load(url: str, stop: threading.Event, sent: list[int]) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
        for i in range(2000):  # bounded: the stop event ends it well before
            if stop.is_set():
                return
            answer = client.post(f"/v1/libraries/{LIBRARY}/search", json={"query": f"sea and ships {i}", "k": 3})
            assert answer.status_code == 200
            sent.append(1)


def test_the_live_batching_view_moves_while_a_load_runs(browser, keyed_server, seeded, results_dir):
    sign_in(browser, keyed_server)
    go(browser, keyed_server, "#/batching", "batching")
    updated = browser.find_element(By.ID, "batching-updated")
    wait_for(browser, lambda d: int(updated.get_attribute("data-scrapes") or 0) >= 2)

    def requests_in_window() -> int:
        return int(text_of(browser, "#stat-requests + small").split()[0])  # "N answered in S s"

    before = requests_in_window()
    stop, sent = threading.Event(), []
    clients = [threading.Thread(target=_load, args=(keyed_server.url, stop, sent)) for _ in range(12)]
    for client in clients:
        client.start()
    try:
        seen = [before]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(set(seen)) < 4:
            scrapes = int(updated.get_attribute("data-scrapes"))
            wait_for(browser, lambda d, s=scrapes: int(updated.get_attribute("data-scrapes")) > s)
            seen.append(requests_in_window())
        browser.save_screenshot(str(results_dir / "console-batching-load.png"))
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    assert len(set(seen)) >= 4 and seen[-1] > before, f"the view did not move: {seen}"
    assert float(text_of(browser, "#stat-requests")) > 0
    assert float(text_of(browser, "#stat-throughput")) > 0
    assert int(text_of(browser, "#stat-batches")) > 0
    bars = [int(text.text) for text in browser.find_elements(By.CSS_SELECTOR, "#chart-batch-sizes text.value")]
    assert sum(bars) > 0
    assert text_of(browser, "#latency-table").count("–") < 9  # percentiles are figures now
    assert len(sent) > 0
    assert page_errors(browser) == []


def test_with_auth_off_the_console_asks_for_no_key(browser, open_server):
    httpx.post(f"{open_server.url}/v1/libraries", json={"name": "open"}).raise_for_status()
    go(browser, open_server, "", "libraries")  # a new origin: no key kept for it
    assert not browser.find_element(By.ID, "key-form").is_displayed()
    assert "open" in text_of(browser, "#libraries-table")
    # This server has no reranker: the playground says so and leaves the field off.
    go(browser, open_server, "#/search", "search")
    assert not browser.find_element(By.ID, "search-rerank").is_enabled()
    assert "no reranker configured" in text_of(browser, "#search-form")
    assert page_errors(browser) == []


def test_first_paint_is_measured(browser, keyed_server, seeded, results_dir):
    """Reported, not asserted: paint timings of cold loads of /console (results/console-paint.json)."""
    sign_in(browser, keyed_server)
    runs = []
    for _ in range(5):
        browser.get("about:blank")
        browser.execute_cdp_cmd("Network.clearBrowserCache", {})
        go(browser, keyed_server, "", "libraries")
        timing = browser.execute_script(
            """
            const paints = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
            const nav = performance.getEntriesByType('navigation')[0];
            const resources = performance.getEntriesByType('resource');
            return {
              first_paint_ms: paints['first-paint'] ?? null,
              first_contentful_paint_ms: paints['first-contentful-paint'] ?? null,
              dom_content_loaded_ms: nav.domContentLoadedEventEnd,
              load_ms: nav.loadEventEnd,
              bytes_transferred: nav.transferSize + resources.filter(r => r.name.includes('/console/')).reduce((s, r) => s + r.transferSize, 0),
            };
            """
        )
        runs.append(timing)
    assert all(run["first_contentful_paint_ms"] is not None for run in runs)
    summary = {
        key: statistics.median(run[key] for run in runs)
        for key in ("first_paint_ms", "first_contentful_paint_ms", "dom_content_loaded_ms", "load_ms")
    }
    report = {
        "what": "cold loads of /console (cache cleared) in headless chromium against a local arrwdb serve",
        "command": "make console-test",
        "browser": browser.capabilities.get("browserVersion"),
        "console_bytes": sum(path.stat().st_size for path in CONSOLE_FILES),
        "runs": runs,
        "median": summary,
    }
    Path(results_dir / "console-paint.json").write_text(json.dumps(report, indent=2) + "\n")


def test_percentiles_follow_prometheus_histogram_quantile(browser, keyed_server):
    """The live view's arithmetic, run in the page: parsing, bucket sums across series, and the
    linear interpolation of Prometheus's histogram_quantile (the +Inf bucket answers its lower bound)."""
    go(browser, keyed_server, "#/batching", "batching")
    figures = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import("/console/assets/metrics.js").then((m) => {
          const text = [
            "# HELP x demo", "# TYPE x histogram",
            'x_bucket{queue="a",le="0.1"} 6', 'x_bucket{queue="a",le="0.2"} 20', 'x_bucket{queue="a",le="+Inf"} 26',
            'x_bucket{queue="b",le="0.1"} 4', 'x_bucket{queue="b",le="0.2"} 10', 'x_bucket{queue="b",le="+Inf"} 14',
            'x_count{queue="a"} 26', 'x_count{queue="b"} 14',
          ].join("\\n");
          const samples = m.parseMetrics(text);
          const all = m.buckets(samples, "x");
          const older = m.buckets(m.parseMetrics(text.replaceAll(" 26", " 6").replaceAll(" 20", " 6")), "x", { queue: "a" });
          done({
            q25: m.quantile(0.25, all), q50: m.quantile(0.5, all), q99: m.quantile(0.99, all),
            count: m.total(samples, "x_count"), countA: m.total(samples, "x_count", { queue: "a" }),
            deltaA: m.bucketDelta(m.buckets(samples, "x", { queue: "a" }), older).map(([, c]) => c),
            empty: m.quantile(0.5, []),
          });
        }, (error) => done(String(error)));
        """
    )
    assert figures["q25"] == pytest.approx(0.1)  # rank 10 of 40: the top of the first bucket
    assert figures["q50"] == pytest.approx(0.15)  # rank 20: half-way through the second (10 of 20)
    assert figures["q99"] == pytest.approx(0.2)  # in the +Inf bucket: its lower bound
    assert figures["count"] == 40 and figures["countA"] == 26
    assert figures["deltaA"] == [0, 14, 20]
    assert figures["empty"] is None
    assert page_errors(browser) == []


CLUSTER = {
    "engines": [
        {
            "name": "arrwdb-engine-0",
            "up": True,
            "node": IMG_TEXT,
            "address": "10.0.0.1",
            "device": "cuda:0",
            "pid": 4242,
            "cores": [0, 1],
            "shards": [
                {"library": LIBRARY, "tenant": "t1", "shard": 0, "role": "primary", "sequence": 42, "in_sync": True},
                {"library": LIBRARY, "tenant": "t1", "shard": 1, "role": "replica", "sequence": 40, "in_sync": False},
            ],
        },
        {"name": "arrwdb-engine-1", "up": False, "node": None, "device": None, "shards": []},
    ],
    "catalog": "unavailable",
}


def test_the_cluster_view_renders_engines_and_shards(browser, keyed_server, seeded, results_dir):
    """An answer of GET /v1/cluster's shape (API.md, with the fields of an engine that is down and of a
    catalog that does not answer), given to the page by a stand-in for fetch on that one path: a
    single-process server has no cluster to show."""
    sign_in(browser, keyed_server)
    browser.execute_script(
        """
        const answer = arguments[0];
        const realFetch = window.fetch;
        window.fetch = (url, init) => String(url).endsWith("/v1/cluster")
          ? Promise.resolve(new Response(answer, { status: 200, headers: { "Content-Type": "application/json" } }))
          : realFetch(url, init);
        location.hash = "#/cluster";
        """,
        json.dumps(CLUSTER),
    )
    view_ready(browser, "cluster")
    assert text_of(browser, "#cluster-summary") == "2 engines, 1 up"
    assert "catalog unavailable" in text_of(browser, "#cluster-catalog")
    engines = browser.find_elements(By.CSS_SELECTOR, "#cluster-engines .engine")
    assert [engine.get_attribute("data-engine") for engine in engines] == ["arrwdb-engine-0", "arrwdb-engine-1"]
    first = engines[0].text
    assert IMG_TEXT in first and "cuda:0" in first and "pid 4242" in first and "cores 2" in first
    rows = engines[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [row.text.split() for row in rows] == [
        [LIBRARY, "t1", "0", "primary", "42", "in", "sync"],
        [LIBRARY, "t1", "1", "replica", "40", "behind"],
    ]
    assert "down" in engines[1].find_element(By.TAG_NAME, "h2").text
    assert "node –" in engines[1].text and "No shards listed" in engines[1].text
    browser.save_screenshot(str(results_dir / "console-cluster-engines.png"))
    nothing_ran(browser)
    assert page_errors(browser) == []
