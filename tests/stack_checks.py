"""What the webhook, kernel and security tests look at: ledger tables, workflows, metrics, and webhooks
configured differently from the stack's own (sharing its ledger and Temporal client)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ledger import Ledger
from payouts.msisdn import vault_from_settings
from runtime.settings import Settings
from tests.stack import Stack
from webhook.app import start_webhook
from webhook.deps import WebhookDeps


async def table_counts(ledger: Ledger) -> dict[str, int]:
    """Row count of every table in the ledger database (reflected: whatever exists is counted)."""
    async with ledger.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        return {
            name: int((await conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"'))).scalar_one())
            for name in sorted(names)
        }


async def dump_tables(ledger: Ledger) -> str:
    """Every row of every table as text, for scanning."""
    lines: list[str] = []
    async with ledger.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        for name in sorted(names):
            rows = (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).all()
            lines.extend(f"{name}: {tuple(row)!r}" for row in rows)
    return "\n".join(lines)


async def workflow_exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def history_length(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


def history_payloads(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every payload object ({"metadata": {"encoding": …}, "data": …}) in a history's JSON, with its path."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            found.append((path, node))
        for key, value in node.items():
            found.extend(history_payloads(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(history_payloads(value, f"{path}[{i}]"))
    return found


# What the SDK itself writes in clear into marker events: a version patch's id, and a local activity's
# bookkeeping (which activity, which attempt, when). The local activity's result is a payload like any
# other and goes through the codec.
PATCH_MARKER_KEYS = frozenset({"id", "deprecated"})
LOCAL_ACTIVITY_MARKER_KEYS = frozenset(
    {"seq", "attempt", "activity_id", "activity_type", "complete_time", "backoff", "original_schedule_time",
     "activation_index"}
)  # fmt: skip


def sdk_marker_bookkeeping(path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The decoded content of a clear payload the SDK writes into a marker, else None (a payload of ours)."""
    if "markerRecordedEventAttributes" not in path or (".details.data" not in path and ".details.version" not in path):
        return None
    content = json.loads(base64.b64decode(payload["data"]))
    if isinstance(content, dict) and set(content) <= PATCH_MARKER_KEYS | LOCAL_ACTIVITY_MARKER_KEYS:
        return content
    return None


def history_failures(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every failure object in a history's JSON (one with a `…FailureInfo`), causes included, with its path."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if any(key.endswith("FailureInfo") for key in node):
            found.append((path, node))
        for key, value in node.items():
            found.extend(history_failures(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(history_failures(value, f"{path}[{i}]"))
    return found


async def metric(http: httpx.AsyncClient, base_url: str, name: str, **labels: str) -> float:
    """A sample of /metrics (0 when absent)."""
    text = (await http.get(f"{base_url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def auth_failures(http: httpx.AsyncClient, base_url: str, endpoint: str, reason: str) -> float:
    return await metric(http, base_url, "webhook_auth_failures_total", endpoint=endpoint, reason=reason)


@dataclass
class State:
    """What must not change when a request is refused."""

    tables: dict[str, int]
    workflow_events: int | None


async def state(stack: Stack, workflow_id: str | None = None) -> State:
    events = await history_length(stack.client, workflow_id) if workflow_id else None
    return State(tables=await table_counts(stack.ledger), workflow_events=events)


def with_webhook(settings: Settings, *, env: str | None = None, **changes: Any) -> Settings:
    """A copy of the stack's settings with webhook fields changed (validated like the environment)."""
    webhook = type(settings.webhook)(**{**settings.webhook.model_dump(), **changes})
    update: dict[str, Any] = {"webhook": webhook}
    if env is not None:
        update["env"] = env
    return settings.model_copy(update=update)


@dataclass(frozen=True)
class WebhookUrls:
    public: str  # Portmone's callbacks
    internal: str  # intake, codec, health, metrics


@contextlib.asynccontextmanager
async def extra_webhook(stack: Stack, settings: Settings) -> AsyncIterator[WebhookUrls]:
    """A second webhook with other settings, on the stack's ledger and Temporal client; yields its URLs."""
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    deps = WebhookDeps(settings=settings, ledger=stack.ledger, temporal=stack.client, vault=vault)
    listeners = await start_webhook(deps, "127.0.0.1", 0, "127.0.0.1", 0)
    scheme = "https" if settings.webhook.tls_cert_path is not None else "http"
    try:
        yield WebhookUrls(f"{scheme}://127.0.0.1:{listeners.public_port}", f"{scheme}://127.0.0.1:{listeners.internal_port}")
    finally:
        await listeners.cleanup()
