"""A whole payout stack for tests: real ledger (SQLite file), real sandbox and webhook over HTTP,
real workers, on whichever Temporal the test brings (time-skipping test server or dev server)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from pydantic import SecretStr
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from ledger import Ledger, upgrade
from notify.analytics import MemorySink
from payouts.models import PayoutView, payout_workflow_id
from payouts.msisdn import vault_from_settings
from payouts.names import STATUS_QUERY
from payouts.status import PayoutStatus
from portmone import PortmoneClient
from runtime import devdefaults
from runtime.settings import (
    CryptoSettings,
    LedgerSettings,
    OutboxSettings,
    PayoutSettings,
    PortmoneSettings,
    SandboxSettings,
    Settings,
    TelecomSettings,
    TelegramSettings,
    TemporalSettings,
    WebhookSettings,
)
from runtime.signing import signature_headers
from sandbox.app import start_sandbox
from sandbox.config import SandboxConfig
from tests.faults import (
    ClientFaults,
    CrashingPortmone,
    FaultyLedger,
    FlakyTemporal,
    LedgerFaults,
    TemporalFaults,
)
from webhook.app import start_webhook
from webhook.deps import WebhookDeps
from workers.deps import activity_set
from workers.registry import build_workers, relay_running
from workflows.receipt_payout import ReceiptPayout

# Operator code 00 does not exist in Ukraine: valid in form, nobody's phone.
TEST_PHONE = "380001234567"
# The operators' Telegram chat that manual-review reminders go to (the fake Bot API accepts any chat).
OPERATORS_CHAT_ID = "-1001234567890"


def sample_receipt(receipt_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """An accepted-receipt intake body (fake phone, 25.00 UAH, accepted now), with overrides."""
    body: dict[str, Any] = {
        "receipt_id": receipt_id or f"R-{uuid.uuid4().hex[:12]}",
        "telegram_id": 4242,
        "msisdn": TEST_PHONE,
        "amount_kopecks": 2500,
        "currency": "UAH",
        "accepted_at": datetime.now(UTC).isoformat(),
    }
    body.update(overrides)
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_crypto() -> CryptoSettings:
    """The keys every test process shares: phone vault, keyed HMAC, Temporal payload codec."""
    return CryptoSettings(
        fernet_keys=SecretStr(devdefaults.DEV_FERNET_KEY),
        hmac_key=SecretStr(devdefaults.DEV_HMAC_KEY),
        codec_keys=SecretStr(devdefaults.DEV_CODEC_KEYS),
    )


def stack_settings(
    tmp: Path,
    *,
    sandbox_port: int,
    webhook_port: int,
    internal_port: int,
    task_queue: str,
    temporal_address: str = "unused:7233",
    read_timeout: float = 5.0,
    telecom: bool = False,
    payout: PayoutSettings | None = None,
    ledger: LedgerSettings | None = None,
    portmone_password: str = devdefaults.DEV_PORTMONE_PASSWORD,
    redeliver_interval: float = 0.5,
) -> Settings:
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    return Settings(
        env="dev",
        data_dir=tmp,
        portmone=PortmoneSettings(
            login=devdefaults.DEV_PORTMONE_LOGIN,
            password=SecretStr(portmone_password),
            api_base=f"{sandbox}/api/directcash/",
            payee_id=devdefaults.DEV_PAYEE_ID,
            connect_timeout_seconds=2.0,
            write_timeout_seconds=2.0,
            read_timeout_seconds=read_timeout,
        ),
        ledger=ledger or LedgerSettings(url=f"sqlite+aiosqlite:///{tmp}/ledger.db"),
        payout=payout or PayoutSettings(callback_timeout_seconds=3600, retry_backoff_seconds=300),
        temporal=TemporalSettings(address=temporal_address, task_queue=task_queue),
        crypto=stack_crypto(),
        telegram=TelegramSettings(
            bot_token=SecretStr(devdefaults.DEV_TELEGRAM_TOKEN),
            api_base=f"{sandbox}/telegram",
            operators_chat_id=OPERATORS_CHAT_ID,
        ),
        telecom=TelecomSettings(api_url=f"{sandbox}/telecom/topups" if telecom else None),
        # The sandbox signs its callbacks with this secret and the webhook checks them.
        webhook=WebhookSettings(
            port=webhook_port,
            internal_port=internal_port,
            intake_token=SecretStr(devdefaults.DEV_INTAKE_TOKEN),
            callback_hmac_secrets=SecretStr(devdefaults.DEV_CALLBACK_HMAC_SECRET),
            redeliver_interval_seconds=redeliver_interval,
            redeliver_after_seconds=0.5,
        ),
        outbox=OutboxSettings(relay_interval_seconds=0.1, retry_first_seconds=0.5, retry_max_seconds=2.0),
        sandbox=SandboxSettings(
            port=sandbox_port,
            callback_url=f"http://127.0.0.1:{webhook_port}/portmone/callback",
            callback_delay_seconds=0.2,
        ),
    )


@dataclass
class StackFaults:
    """Faults the sandbox cannot make (tests.faults): the ledger the activities and the webhook use,
    the worker dying after Portmone answered, the webhook's signals to Temporal."""

    ledger: LedgerFaults = field(default_factory=LedgerFaults)
    client: ClientFaults = field(default_factory=ClientFaults)
    temporal: TemporalFaults = field(default_factory=TemporalFaults)

    def clear(self) -> None:
        self.ledger.clear()
        self.client.crash_after_send.disarm()
        self.temporal.signals.disarm()
        self.temporal.refuse.clear()


@dataclass
class Stack:
    client: Client
    settings: Settings
    ledger: Ledger
    http: httpx.AsyncClient
    sink: MemorySink
    sandbox_url: str
    webhook_url: str  # the webhook's public listener: Portmone's callbacks only
    internal_url: str  # its internal listener: intake, codec, health, metrics
    injected: StackFaults = field(default_factory=StackFaults)
    # Workflows this stack started (submit): the ones still running are terminated at teardown, so
    # their timers cannot hold the time-skipping server's clock in later tests.
    started: list[str] = field(default_factory=list)

    # ---- intake --------------------------------------------------------------------------------

    def receipt(self, receipt_id: str | None = None, **overrides: Any) -> dict[str, Any]:
        return sample_receipt(receipt_id, **overrides)

    async def post_receipt(self, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        token = devdefaults.DEV_INTAKE_TOKEN if token is None else token
        return await self.http.post(
            f"{self.internal_url}/v1/receipts/accepted", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    async def submit(self, **overrides: Any) -> WorkflowHandle[Any, Any]:
        body = self.receipt(**overrides)
        resp = await self.post_receipt(body)
        assert resp.status_code == 202, resp.text
        self.started.append(payout_workflow_id(body["receipt_id"]))
        return self.client.get_workflow_handle_for(ReceiptPayout.run, payout_workflow_id(body["receipt_id"]))

    # ---- callbacks (signed as the sandbox signs them) --------------------------------------------

    async def post_callback(
        self, body: bytes, *, signed: bool = True, content_type: str = "application/xml", **headers: str
    ) -> httpx.Response:
        """POST a callback to the webhook, signed with the configured callback secret unless `signed=False`."""
        sent = {"Content-Type": content_type}
        if signed:
            sent.update(signature_headers(self.settings.webhook.callback_secret_list()[:1], body))
        sent.update(headers)
        return await self.http.post(f"{self.webhook_url}/portmone/callback", content=body, headers=sent)

    # ---- sandbox -------------------------------------------------------------------------------

    async def faults(self, spec: dict[str, Any]) -> None:
        resp = await self.http.post(f"{self.sandbox_url}/_sandbox/faults", json=spec)
        assert resp.status_code == 200, resp.text

    async def record(self, what: str) -> list[dict[str, Any]]:
        resp = await self.http.get(f"{self.sandbox_url}/_sandbox/{what}")
        assert resp.status_code == 200, resp.text
        data = resp.json()
        return list(data[what] if isinstance(data, dict) else data)

    async def analytics(self, *names: str, timeout: float = 10.0) -> list[str]:
        """The analytics events' names, once the outbox relay has delivered every one of `names`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(name in [e.name for e in self.sink.events] for name in names) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return [e.name for e in self.sink.events]

    async def telegram_methods(self, *methods: str, timeout: float = 10.0) -> list[str]:
        """The Bot API methods the fake Telegram saw, once each of `methods` was seen (the relay sends them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = [t["method"] for t in await self.record("telegram")]
            if all(m in seen for m in methods) or loop.time() >= deadline:
                return seen
            await asyncio.sleep(0.05)

    async def bills_for(self, masked_phone: str | None = None) -> list[dict[str, Any]]:
        return await self.record("bills")

    async def paid_at_portmone(self, bill_id: str) -> httpx.Response:
        """Portmone pays an open bill and sends its callback (the sandbox's on-demand callback)."""
        return await self.http.post(f"{self.sandbox_url}/_sandbox/bills/{bill_id}/callback", json={"status": "PAYED"})

    async def creates(self) -> list[dict[str, Any]]:
        return [r for r in await self.record("requests") if r.get("method") == "bills.create"]

    # ---- workflow ------------------------------------------------------------------------------

    async def reset(self, handle: WorkflowHandle[Any, Any], *, to: str = "first") -> WorkflowHandle[Any, Any]:
        """An engineer's Reset of the payout's current run to its first (or last) completed workflow task,
        as the Web UI's Reset button does by default (signals and updates after that point re-delivered);
        the new run's handle.
        The dev server resets; the Java test server does not. A run with no completed task cannot be
        reset (ValueError), as in the Web UI."""
        described = await handle.describe()
        history = await self.client.get_workflow_handle(handle.id, run_id=described.run_id).fetch_history()
        completed = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        if not completed:
            raise ValueError(f"{handle.id}: no completed workflow task to reset to yet")
        answer = await self.client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=self.client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=described.run_id),
                reason="an engineer pressed Reset",
                workflow_task_finish_event_id=completed[0] if to == "first" else completed[-1],
                request_id=str(uuid.uuid4()),
                reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_ALL_ELIGIBLE,
            )
        )
        return self.client.get_workflow_handle(handle.id, run_id=answer.run_id, result_type=PayoutView)

    async def view(self, handle: WorkflowHandle[Any, Any]) -> PayoutView:
        view: PayoutView = await handle.query(STATUS_QUERY, result_type=PayoutView)
        return view

    async def wait_status(
        self, handle: WorkflowHandle[Any, Any], statuses: Iterable[PayoutStatus], timeout: float = 30
    ) -> PayoutView:
        wanted = set(statuses)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: PayoutView | None = None
        while loop.time() < deadline:
            try:
                last = await self.view(handle)
            except Exception:
                last = None
            if last is not None and last.status in wanted:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{handle.id} did not reach {sorted(wanted)} in {timeout}s; last view: {last}")


@asynccontextmanager
async def running_stack(
    client: Client,
    tmp: Path,
    *,
    read_timeout: float = 5.0,
    telecom: bool = False,
    payout: PayoutSettings | None = None,
    workers: bool = True,
    ledger_settings: LedgerSettings | None = None,
    portmone_password: str = devdefaults.DEV_PORTMONE_PASSWORD,
    relay: bool = True,
    redeliver_interval: float = 0.5,
) -> AsyncIterator[Stack]:
    """The stack, with the outbox relay beside the workers as `payouts worker` runs it (`relay=False`:
    payout events stay in the ledger's outbox)."""
    sandbox_port, webhook_port, internal_port = free_port(), free_port(), free_port()
    settings = stack_settings(
        tmp,
        sandbox_port=sandbox_port,
        webhook_port=webhook_port,
        internal_port=internal_port,
        task_queue=f"payouts-{uuid.uuid4().hex[:8]}",
        temporal_address=client.service_client.config.target_host,
        read_timeout=read_timeout,
        telecom=telecom,
        payout=payout,
        ledger=ledger_settings,
        portmone_password=portmone_password,
        redeliver_interval=redeliver_interval,
    )
    await asyncio.to_thread(upgrade, settings.ledger.url)
    ledger = Ledger.from_url(settings.ledger.url)
    faults = StackFaults()
    faulty_ledger = cast(Ledger, FaultyLedger(ledger, faults.ledger))
    portmone = PortmoneClient.from_settings(settings.portmone)
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    sandbox_runner, _ = await start_sandbox(
        SandboxConfig.from_settings(settings), "127.0.0.1", sandbox_port
    )
    flaky_temporal = cast(Client, FlakyTemporal(client, faults.temporal))
    webhook = await start_webhook(
        WebhookDeps(settings=settings, ledger=faulty_ledger, temporal=flaky_temporal, vault=vault),
        "127.0.0.1",
        webhook_port,
        "127.0.0.1",
        internal_port,
    )
    sink = MemorySink()
    http = httpx.AsyncClient(timeout=10)
    crashing = cast(PortmoneClient, CrashingPortmone(portmone, faults.client))
    try:
        async with (
            activity_set(settings, sink, ledger=faulty_ledger, portmone=crashing) as activities,
            relay_running(activities) if relay else contextlib.nullcontext(),
        ):
            running = []
            if workers:
                for worker in build_workers(
                    client,
                    activities,
                    task_queue=settings.temporal.task_queue,
                    tuning=settings.worker,
                    workflow_failure_exception_types=[Exception],
                ):
                    running.append(worker)
                    await worker.__aenter__()
            stack = Stack(
                client=client,
                settings=settings,
                ledger=ledger,
                http=http,
                sink=sink,
                sandbox_url=f"http://127.0.0.1:{sandbox_port}",
                webhook_url=f"http://127.0.0.1:{webhook_port}",
                internal_url=f"http://127.0.0.1:{internal_port}",
                injected=faults,
            )
            try:
                yield stack
            finally:
                await terminate_running(client, stack.started)
                for worker in reversed(running):
                    await worker.__aexit__(None, None, None)
    finally:
        await http.aclose()
        await webhook.cleanup()
        await sandbox_runner.cleanup()
        await portmone.aclose()
        await ledger.aclose()


async def terminate_running(client: Client, workflow_ids: Iterable[str], settle_seconds: float = 5.0) -> None:
    """Terminate the workflows that are still running, each once it has nothing in flight (the Java
    test server keeps its clock locked for a task that was in flight when its workflow was terminated)."""
    loop = asyncio.get_running_loop()
    for workflow_id in dict.fromkeys(workflow_ids):
        handle = client.get_workflow_handle(workflow_id)
        deadline = loop.time() + settle_seconds
        quiet = 0
        try:
            while loop.time() < deadline and quiet < 2:
                described = await handle.describe()
                if described.status != WorkflowExecutionStatus.RUNNING:
                    break
                raw = described.raw_description
                busy = bool(raw.pending_activities) or raw.HasField("pending_workflow_task")
                quiet = 0 if busy else quiet + 1
                await asyncio.sleep(0.05)
            else:
                await handle.terminate(reason="test stack teardown")
        except RPCError:
            continue  # never started, or already closed


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a separate `payouts worker` process needs to join this stack."""
    p = settings.portmone
    return {
        "PAYOUTS_ENV": "dev",
        "TEMPORAL_ADDRESS": settings.temporal.address,
        "TEMPORAL_NAMESPACE": settings.temporal.namespace,
        "TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "WORKER_METRICS_PORT": "0",  # a free port: tests run side by side
        "LEDGER_URL": settings.ledger.url,
        "PORTMONE_LOGIN": p.login,
        "PORTMONE_PASSWORD": p.password.get_secret_value(),
        "PORTMONE_API_BASE": p.api_base,
        "PORTMONE_PAYEE_ID": p.payee_id,
        "PORTMONE_READ_TIMEOUT_SECONDS": str(p.read_timeout_seconds),
        "PORTMONE_CONNECT_TIMEOUT_SECONDS": str(p.connect_timeout_seconds),
        "PORTMONE_WRITE_TIMEOUT_SECONDS": str(p.write_timeout_seconds),
        "PAYOUTS_FERNET_KEYS": settings.crypto.fernet_keys.get_secret_value(),
        "PAYOUTS_HMAC_KEY": settings.crypto.hmac_key.get_secret_value(),
        "PAYOUTS_CODEC_KEYS": settings.crypto.codec_keys.get_secret_value(),
        "TELEGRAM_BOT_TOKEN": settings.telegram.bot_token.get_secret_value(),
        "TELEGRAM_API_BASE": settings.telegram.api_base,
        "TELEGRAM_OPERATORS_CHAT_ID": settings.telegram.operators_chat_id or "",
    }
