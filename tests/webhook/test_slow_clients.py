"""Slow and oversized requests against the running webhook, over a raw TCP socket.

A client that declares `Content-Length: 4096` and sends 40 bytes used to hold the connection with no
answer for minutes, on every route that reads a body. Now each such route answers 408 within
`WEBHOOK_BODY_TIMEOUT_SECONDS` and closes the connection; a header line over
`WEBHOOK_MAX_HEADER_BYTES` (or more than `WEBHOOK_MAX_HEADERS` headers) gets 400 before any handler
runs. Neither changes the ledger or starts a workflow.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from payouts.models import payout_workflow_id
from runtime import devdefaults
from tests.stack import Stack, sample_receipt
from tests.stack_checks import WebhookUrls, extra_webhook, state, with_webhook, workflow_exists

BODY_TIMEOUT = 1.0
MAX_HEADER_BYTES = 1024
MAX_HEADERS = 16
SLACK = 3.0  # scheduling, a loaded test machine

_BEARER = f"Authorization: Bearer {devdefaults.DEV_INTAKE_TOKEN}"
# (path, content type, extra header lines): every route that reads a body
_BODY_ROUTES = [
    ("/v1/receipts/accepted", "application/json", [_BEARER]),
    ("/portmone/callback", "application/xml", []),
    ("/codec/encode", "application/json", []),
    ("/codec/decode", "application/json", []),
]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the last byte sent to the status line
    closed: bool  # the server closed the connection after answering


@pytest.fixture
async def strict(shared_stack: Stack) -> AsyncIterator[WebhookUrls]:
    """A webhook on the stack's ledger and Temporal with short, small limits."""
    settings = with_webhook(
        shared_stack.settings,
        body_timeout_seconds=BODY_TIMEOUT,
        max_header_bytes=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
    )
    async with extra_webhook(shared_stack, settings) as urls:
        yield urls


def _listener(urls: WebhookUrls, path: str) -> str:
    """Portmone's callbacks go to the public listener, everything else to the internal one."""
    return urls.public if path == "/portmone/callback" else urls.internal


async def _send(url: str, head: bytes, body: bytes = b"", *, wait: float, until_closed: bool = False) -> Answer:
    """Send `head` (request line and headers, without the blank line) and `body` as is; read the answer
    (and, with `until_closed`, wait up to `wait` more for the server to close the connection)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        sent = time.monotonic()
        status_line = await asyncio.wait_for(reader.readline(), wait)
        seconds = time.monotonic() - sent
        assert status_line, "connection closed without an answer"
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), wait)) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        payload = await asyncio.wait_for(reader.readexactly(length), wait)
        closed = False
        if until_closed:
            with contextlib.suppress(TimeoutError):
                closed = await asyncio.wait_for(reader.read(1), wait) == b""
        return Answer(int(status_line.split()[1]), headers, payload, seconds, closed)
    finally:
        writer.close()


def _head(path: str, content_type: str, extra: list[str], content_length: int) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {content_type}",
        f"Content-Length: {content_length}",
        *extra,
    ]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize(("path", "content_type", "extra"), _BODY_ROUTES, ids=[r[0] for r in _BODY_ROUTES])
async def test_a_half_sent_body_gets_408_within_the_timeout_and_the_connection_closes(
    shared_stack: Stack, strict: WebhookUrls, path: str, content_type: str, extra: list[str]
) -> None:
    receipt_id = "SLOW-BODY-1"
    forty = json.dumps({"receipt_id": receipt_id, "pad": "x" * 40}).encode()[:40]
    before = await state(shared_stack)

    head = _head(path, content_type, extra, 4096)
    answer = await _send(_listener(strict, path), head, forty, wait=BODY_TIMEOUT + SLACK, until_closed=True)

    assert answer.status == 408, answer
    assert BODY_TIMEOUT * 0.8 <= answer.seconds <= BODY_TIMEOUT + SLACK, answer.seconds
    assert answer.headers["content-type"].startswith("application/json")
    assert "not received within" in json.loads(answer.body)["error"]
    assert answer.headers.get("connection", "").lower() == "close"
    assert answer.closed
    assert await state(shared_stack) == before
    assert not await workflow_exists(shared_stack.client, payout_workflow_id(receipt_id))


async def test_a_body_that_trickles_in_within_the_timeout_is_read(strict: WebhookUrls) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    raw = json.dumps({"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"1")}]}).encode()
    parts = urlsplit(strict.internal)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(_head("/codec/encode", "application/json", [], len(raw)) + b"\r\n\r\n" + raw[:10])
        await writer.drain()
        await asyncio.sleep(BODY_TIMEOUT / 3)
        writer.write(raw[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), BODY_TIMEOUT + SLACK)
    finally:
        writer.close()
    assert status_line.split()[1] == b"200", status_line


async def test_the_default_stack_webhook_does_not_wait_for_a_half_sent_body_for_long(shared_stack: Stack) -> None:
    """The default (10 s) holds on the stack's own webhook too."""
    timeout = shared_stack.settings.webhook.body_timeout_seconds
    assert timeout == 10.0
    head = _head("/portmone/callback", "application/xml", [], 4096)
    answer = await _send(shared_stack.webhook_url, head, b"<rsp", wait=timeout + SLACK)
    assert answer.status == 408 and answer.seconds <= timeout + SLACK


async def test_a_header_over_the_limit_is_400_and_changes_nothing(shared_stack: Stack, strict: WebhookUrls) -> None:
    body = sample_receipt("OVERSIZE-HEADER-1")
    raw = json.dumps(body).encode()
    before = await state(shared_stack)

    shared_stack.started.append(payout_workflow_id(body["receipt_id"]))  # terminated at teardown, should it start
    big = f"X-Padding: {'a' * 2 * MAX_HEADER_BYTES}"
    answer = await _send(
        strict.internal, _head("/v1/receipts/accepted", "application/json", [_BEARER, big], len(raw)), raw, wait=SLACK
    )

    assert answer.status in (400, 431), answer
    assert answer.seconds < SLACK
    assert await state(shared_stack) == before
    assert not await workflow_exists(shared_stack.client, payout_workflow_id(body["receipt_id"]))


@pytest.mark.parametrize(
    ("name", "head", "status"),
    [
        ("header under the limit", f"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Padding: {'a' * 900}", 200),
        ("header over the limit", f"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Padding: {'a' * 2000}", 400),
        ("request line over the limit", f"GET /healthz?{'a' * 2000} HTTP/1.1\r\nHost: a", 400),
        ("headers at the count limit", "GET /healthz HTTP/1.1\r\nHost: a" + "".join(
            f"\r\nX-{i}: 1" for i in range(MAX_HEADERS - 1)), 200),
        ("too many headers", "GET /healthz HTTP/1.1\r\nHost: a" + "".join(
            f"\r\nX-{i}: 1" for i in range(MAX_HEADERS + 4)), 400),
    ],
)
async def test_header_bounds_come_from_the_settings(strict: WebhookUrls, name: str, head: str, status: int) -> None:
    answer = await _send(strict.internal, head.encode(), wait=SLACK)
    assert answer.status == status, (name, answer)


async def test_the_default_header_limit_is_8_kib(shared_stack: Stack) -> None:
    assert shared_stack.settings.webhook.max_header_bytes == 8 * 1024
    for size, status in ((7 * 1024, 200), (9 * 1024, 400)):
        head = f"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Padding: {'a' * size}".encode()
        answer = await _send(shared_stack.internal_url, head, wait=SLACK)
        assert answer.status == status, (size, answer)
