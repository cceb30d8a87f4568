"""The Temporal server dashboard reads names the server really exports: a Temporal dev server with its
metrics listener on (as PROMETHEUS_ENDPOINT turns it on in the compose stack) is scraped right after
start. (The payouts dashboards' names are checked against the code in tests/test_deploy.py, the SDK's
against a real worker in tests/observability/test_scrape.py.)"""

from __future__ import annotations

import re
import subprocess
import time

import httpx

from console.tools import temporal_cli
from tests.stack import free_port
from tests.test_deploy import TEMPORAL_SERVER_AT_START


def test_the_temporal_server_exports_what_its_dashboard_reads() -> None:
    port, metrics_port = free_port(), free_port()
    server = subprocess.Popen(
        [temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--metrics-port", str(metrics_port), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        missing: set[str] = set(TEMPORAL_SERVER_AT_START)
        while missing and time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
                # The names as Prometheus stores them (a parser would add _total to the server's counters).
                scraped = set(re.findall(r"^([A-Za-z_:][\w:]*)[{ ]", text, flags=re.MULTILINE))
                missing = {n for n in missing if n not in scraped and f"{n}_bucket" not in scraped}
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(20)
    assert not missing, f"the Temporal server does not export {sorted(missing)}"
