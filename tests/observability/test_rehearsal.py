"""A rehearsal of the shipped topology with real monitoring (docs/deploy.md, "A rehearsal").

No Docker engine runs here, so docker-compose.temporal.yml is validated, never run. This test runs what
it describes as processes on this machine: the one-shot jobs as compose orders them (`payouts migrate`,
then `payouts schedules`), two `payouts worker`, two `payouts webhook` and `payouts consumer` (when the
local RabbitMQ answers), against the Temporal dev server and a PostgreSQL ledger; Debian's real
`prometheus` with the shipped deploy/prometheus/prometheus.yml, its targets rewritten to the local
ports and nothing else changed, and Debian's real Alertmanager started by deploy/alertmanager/start.sh
with the shipped route. Then the sandbox refuses every bill (Portmone's code 4, "operator did not
answer"). Prometheus must see every target up, `PortmoneErrorRateHigh` must go from inactive to firing,
and Alertmanager must list it.

The shipped rule waits `for: 5m`; a rule-file override (a copy of alerts.yml beside the rewritten
prometheus.yml, the shipped file untouched) shortens it to 10 s and evaluates the group every 5 s.

Marked `rehearsal` (`pytest -m rehearsal`); about a minute of wall time.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from bench.soak import Processes, stack_environment
from console.tools import temporal_cli
from payouts import search_attributes as sa
from runtime import devdefaults
from runtime.temporal_client import data_converter
from tests.ledger.helpers import PgAdmin
from tests.rabbit.helpers import open_broker
from tests.stack import free_port, sample_receipt, stack_crypto

pytestmark = [pytest.mark.rehearsal, pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERT = "PortmoneErrorRateHigh"
RECEIPTS = 6
TOKEN = {"Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}"}


def _executable(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{names[0]} is not installed (scripts/test.sh installs Debian's prometheus, prometheus-alertmanager)")


def rewrite_targets(config: dict[str, Any], local: dict[str, list[str]]) -> dict[str, Any]:
    """The shipped scrape config with each compose service name it names (DNS discovery or a static
    target) replaced by the local addresses of that service; every other key as shipped."""
    out = copy.deepcopy(config)
    for job in out["scrape_configs"]:
        services = [name for sd in job.pop("dns_sd_configs", []) for name in sd["names"]]
        services += [target.split(":")[0] for static in job.pop("static_configs", []) for target in static["targets"]]
        unknown = [name for name in services if name not in local]
        assert not unknown, f"job {job['job_name']} scrapes {unknown}: start it in the rehearsal"
        job["static_configs"] = [{"targets": [address for name in services for address in local[name]]}]
    for manager in out["alerting"]["alertmanagers"]:
        manager["static_configs"] = [{"targets": local["alertmanager"]}]
    return out


def rule_override(shipped: dict[str, Any]) -> dict[str, Any]:
    """alerts.yml with the error-rate alert's `for:` shortened and its group evaluated every 5 s."""
    rules = copy.deepcopy(shipped)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                rule["for"] = "5s"
                group["interval"] = "5s"
    return rules


@contextmanager
def daemon(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float, logs: Path) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        await asyncio.sleep(0.5)
    tails = {p.name: p.read_text(errors="replace")[-1500:] for p in sorted(logs.glob("*.log"))}
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last}); logs: {tails}")


async def run_job(procs: Processes, name: str, *args: str) -> None:
    """A one-shot job as compose runs it: it must complete successfully before what depends on it."""
    job = procs.start(name, *args)
    code = await asyncio.to_thread(job.wait, 120)
    assert code == 0, (procs.log_dir / f"{name}.log").read_text()


def rabbit_answers() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5672)) == 0


async def test_the_shipped_monitoring_sees_every_target_and_pages_on_portmone_refusals(
    pg_admin: PgAdmin, tmp_path: Path
) -> None:
    started = time.monotonic()
    prometheus_bin = _executable("prometheus")
    alertmanager_bin = _executable("prometheus-alertmanager", "alertmanager")
    logs = tmp_path / "logs"
    logs.mkdir()
    ledger_url = await pg_admin.create_database()
    ports = {name: free_port() for name in (
        "temporal_metrics", "sandbox", "webhook_0", "internal_0", "webhook_1", "internal_1", "worker_0", "worker_1",
        "consumer", "prometheus", "alertmanager", "receiver",
    )}  # fmt: skip
    with_consumer = rabbit_answers()
    local = {
        "webhook": [f"127.0.0.1:{ports['internal_0']}", f"127.0.0.1:{ports['internal_1']}"],
        "worker": [f"127.0.0.1:{ports['worker_0']}", f"127.0.0.1:{ports['worker_1']}"],
        "temporal": [f"127.0.0.1:{ports['temporal_metrics']}"],
        "alertmanager": [f"127.0.0.1:{ports['alertmanager']}"],
        # The consumer's scrape job comes with its compose healthcheck (issue 19, item 3): when the
        # shipped prometheus.yml names `consumer`, its target is rewritten here like the others.
        "consumer": [f"127.0.0.1:{ports['consumer']}"],
    }

    # ---- Prometheus and Alertmanager, as shipped but for the targets and the shortened `for:` ------------
    config_dir = tmp_path / "prometheus"
    config_dir.mkdir()
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(rewrite_targets(shipped, local)))
    (config_dir / "alerts.yml").write_text(
        yaml.safe_dump(rule_override(yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())))
    )
    receiver = f"http://127.0.0.1:{ports['receiver']}"
    manager_env = {
        "PATH": os.environ["PATH"], "ALERTMANAGER_BIN": alertmanager_bin,
        "ALERTMANAGER_RENDERED": str(tmp_path / "alertmanager.yml"),
        "ALERTMANAGER_PAGE_WEBHOOK_URL": f"{receiver}/page", "ALERTMANAGER_TICKET_WEBHOOK_URL": f"{receiver}/ticket",
    }
    prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
    alertmanager_url = f"http://127.0.0.1:{ports['alertmanager']}"

    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(stack_crypto()),
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
        dev_server_extra_args=["--metrics-port", str(ports["temporal_metrics"])],
    ) as temporal:
        env = stack_environment(
            temporal_address=temporal.client.service_client.config.target_host, ledger_url=ledger_url,
            sandbox_port=ports["sandbox"], webhook_port=ports["webhook_0"], internal_port=ports["internal_0"],
            data_dir=tmp_path, callback_timeout=600,
        )  # fmt: skip
        env["WORKER_METRICS_HOST"] = "127.0.0.1"
        procs = Processes(env=env, log_dir=logs)
        with (
            daemon(["sh", str(ROOT / "deploy" / "alertmanager" / "start.sh"),
                    f"--storage.path={tmp_path / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address="],
                   logs / "alertmanager.log", env=manager_env),
            daemon([prometheus_bin, f"--config.file={config_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], logs / "prometheus.log"),
        ):
            http = httpx.AsyncClient(timeout=10, trust_env=False)
            queues: dict[str, str] = {}
            try:
                # ---- the stack, in compose's order ------------------------------------------------------
                await run_job(procs, "migrate", "migrate")
                procs.sandbox = procs.start("sandbox", "sandbox", "--port", str(ports["sandbox"]))
                schedules = asyncio.create_task(run_job(procs, "schedules", "schedules"))
                for i in (0, 1):
                    procs.workers.append(procs.start(f"worker-{i}", "worker",
                                                     env={"WORKER_METRICS_PORT": str(ports[f"worker_{i}"])}))
                procs.webhook = procs.start("webhook-0", "webhook")
                procs.others.append(procs.start("webhook-1", "webhook", env={
                    "WEBHOOK_PORT": str(ports["webhook_1"]), "WEBHOOK_INTERNAL_PORT": str(ports["internal_1"])}))
                if with_consumer:
                    # Queues of its own (the broker is shared, and keeps what earlier runs declared).
                    suffix = uuid.uuid4().hex[:10]
                    queues |= {"RABBIT_INTAKE_QUEUE": f"rehearsal.receipt.accepted.{suffix}",
                              "RABBIT_DEAD_LETTER_QUEUE": f"rehearsal.receipt.accepted.dead.{suffix}",
                              "RABBIT_RETRY_QUEUE": f"rehearsal.receipt.accepted.retry.{suffix}"}
                    procs.others.append(procs.start("consumer", "consumer",
                                                    env={"RABBIT_METRICS_PORT": str(ports["consumer"]), **queues}))
                await schedules

                async def all_ready() -> bool:
                    urls = [f"http://{a}/readyz" for a in (*local["webhook"], *local["worker"])]
                    answers = await asyncio.gather(*(http.get(url) for url in urls))
                    return all(a.status_code == 200 for a in answers)

                await until("every webhook and worker ready", all_ready, 60, logs)
                stack_up = time.monotonic() - started

                # ---- Prometheus sees every target up; the alert is inactive ----------------------------
                expected = {job["job_name"] for job in shipped["scrape_configs"]}

                async def targets_up() -> dict[str, int] | None:
                    active = (await http.get(f"{prometheus_url}/api/v1/targets")).json()["data"]["activeTargets"]
                    up: dict[str, int] = {}
                    for target in active:
                        if target["health"] != "up":
                            return None
                        up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
                    return up if set(up) == expected else None

                up = await until("every scrape target up", targets_up, 45, logs)

                async def rule() -> dict[str, Any] | None:
                    groups = (await http.get(f"{prometheus_url}/api/v1/rules")).json()["data"]["groups"]
                    found = [r for g in groups for r in g["rules"] if r.get("name") == ALERT]
                    return found[0] if found and found[0]["lastEvaluation"][:4] != "0001" else None

                before = await until("the error-rate rule evaluated", rule, 30, logs)
                consumer_metrics = None
                if with_consumer:
                    consumer_metrics = (await http.get(f"http://{local['consumer'][0]}/metrics")).text

                # ---- a burst of Portmone's refusals ------------------------------------------------------
                sandbox = f"http://127.0.0.1:{ports['sandbox']}"
                (await http.post(f"{sandbox}/_sandbox/faults", json={"fail_codes": {"4": 1.0}})).raise_for_status()
                burst = time.monotonic()
                for i in range(RECEIPTS):
                    body = sample_receipt(f"REHEARSAL-{i}", msisdn=f"38000{i:07d}")
                    answer = await http.post(f"http://{local['webhook'][i % 2]}/v1/receipts/accepted",
                                             json=body, headers=TOKEN)
                    assert answer.status_code == 202, answer.text

                async def firing() -> dict[str, Any] | None:
                    alerts = (await http.get(f"{prometheus_url}/api/v1/alerts")).json()["data"]["alerts"]
                    found = [a for a in alerts if a["labels"]["alertname"] == ALERT and a["state"] == "firing"]
                    return found[0] if found else None

                fired = await until(f"{ALERT} firing in Prometheus", firing, 60, logs)
                fired_after = time.monotonic() - burst

                async def listed() -> list[dict[str, Any]] | None:
                    alerts = (await http.get(f"{alertmanager_url}/api/v2/alerts")).json()
                    found = [a for a in alerts if a["labels"].get("alertname") == ALERT]
                    return found or None

                managed = await until(f"{ALERT} listed by Alertmanager", listed, 30, logs)
                status = (await http.get(f"{alertmanager_url}/api/v2/status")).json()
            finally:
                procs.stop()
                await http.aclose()
                if with_consumer:
                    broker = await open_broker()
                    try:
                        await broker.delete(queues.values())
                    finally:
                        await broker.connection.close()

    # ---- what the rehearsal proved -----------------------------------------------------------------------
    assert up["payouts-webhook"] == 2 and up["payouts-worker"] == 2 and up["temporal-server"] == 1, up
    assert before["state"] == "inactive", before
    assert fired["labels"]["severity"] == "page"
    assert fired["annotations"]["runbook_url"] == "docs/observability.md#portmoneerrorratehigh"
    assert float(fired["value"]) > 0.02
    [alert] = managed
    assert alert["labels"]["severity"] == "page" and alert["status"]["state"] == "active"
    assert alert["annotations"]["runbook_url"].endswith("#portmoneerrorratehigh")
    original = yaml.safe_load(status["config"]["original"])
    assert {r["name"] for r in original["receivers"]} == {"page", "ticket"}  # the shipped route, filled in
    assert original["receivers"][0]["webhook_configs"][0]["url"].startswith(receiver)
    if consumer_metrics is not None:
        assert "payout_queue_dead_letters_total" in consumer_metrics
    print(f"rehearsal: stack ready after {stack_up:.1f} s; {ALERT} firing {fired_after:.1f} s after the burst; "
          f"{time.monotonic() - started:.1f} s in all; consumer {'ran' if with_consumer else 'skipped'}")
