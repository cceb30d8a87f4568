"""PortmoneClient against the real sandbox over HTTP, and against transports that fail on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from portmone import (
    AnsweredFail,
    AnsweredOk,
    BillRequest,
    BillStatus,
    ErrorKind,
    NotSent,
    Outcome,
    OutcomeUnknown,
    PortmoneClient,
    parse_rsp,
)
from runtime import devdefaults
from runtime.settings import PortmoneSettings
from tests.sandbox_fixtures import TEST_PHONE, CallbackReceiver, SandboxHandle, closed_port, make_client

PASSWORD = devdefaults.DEV_PORTMONE_PASSWORD
PAYEE = devdefaults.DEV_PAYEE_ID
MASKED = "+380•••••67"


async def _create(client: PortmoneClient, **overrides: Any) -> Outcome:
    values: dict[str, Any] = {
        "payee_id": PAYEE,
        "contract_number": TEST_PHONE,
        "amount_kopecks": 2500,
        "currency": "UAH",
        "comment": "receipt r-1",
    }
    values.update(overrides)
    return await client.create_bill(**values)


def _assert_redacted(outcome: Outcome) -> None:
    text = repr(outcome)
    assert PASSWORD not in text
    assert TEST_PHONE not in text
    assert outcome.exchange.request["password"] == "***"
    assert outcome.exchange.request["contractNumber"] == MASKED


# ---- one test per outcome class, against the sandbox ------------------------------------------


async def test_ok_returns_the_created_bill(sandbox: SandboxHandle, portmone_client: PortmoneClient) -> None:
    outcome = await _create(portmone_client)
    assert isinstance(outcome, AnsweredOk), outcome
    bill = outcome.bill
    assert bill.status is BillStatus.CREATED
    assert bill.bill_id
    assert bill.amount_kopecks == 2500
    assert bill.contract_number == TEST_PHONE
    assert bill.currency == "UAH"
    assert bill.comment == "receipt r-1"
    assert bill.payee_id == PAYEE
    ex = outcome.exchange
    assert ex.method == "bills.create"
    assert ex.http_status == 200
    assert ex.elapsed_ms >= 0
    assert ex.request["amount"] == "25.00"
    assert ex.request["version"] == "2"
    assert ex.response_body is not None
    assert bill.bill_id in ex.response_body
    assert MASKED in ex.response_body
    _assert_redacted(outcome)
    bills = await sandbox.records("bills")
    assert [b["bill_id"] for b in bills] == [bill.bill_id]


async def test_bill_ids_are_unique(portmone_client: PortmoneClient) -> None:
    ids = set()
    for _ in range(5):
        outcome = await _create(portmone_client)
        assert isinstance(outcome, AnsweredOk)
        ids.add(outcome.bill.bill_id)
    assert len(ids) == 5


async def test_fail_v2_carries_the_description(portmone_client: PortmoneClient) -> None:
    outcome = await _create(portmone_client, payee_id="no-such-payee")
    assert isinstance(outcome, AnsweredFail), outcome
    assert outcome.error.code == "13"
    assert outcome.error.kind is ErrorKind.CONFIGURATION
    assert outcome.error.description
    assert outcome.error.fell_back_to_v1 is False
    assert outcome.bill is None
    _assert_redacted(outcome)


async def test_fail_with_version_1_has_no_description(sandbox: SandboxHandle) -> None:
    async with make_client(sandbox, version=1, lang="en") as client:
        outcome = await _create(client, payee_id="no-such-payee")
    assert isinstance(outcome, AnsweredFail), outcome
    assert outcome.error.code == "13"
    assert outcome.error.description is None
    assert outcome.error.message == "Unknown payee"
    # We asked for version 1, so this is no fall-back.
    assert outcome.error.fell_back_to_v1 is False
    assert outcome.exchange.request["version"] == "1"


async def test_fail_fallback_to_v1_is_flagged(
    sandbox: SandboxHandle, portmone_client: PortmoneClient
) -> None:
    await sandbox.set_faults({"version1_fallback": {"times": 1}})
    outcome = await _create(portmone_client, currency="UAH", payee_id="nope")
    assert isinstance(outcome, AnsweredFail), outcome
    assert outcome.error.description is None
    assert outcome.error.fell_back_to_v1 is True


async def test_not_sent_when_nothing_listens() -> None:
    port = closed_port()
    async with PortmoneClient(
        api_base=f"http://127.0.0.1:{port}/api/directcash/",
        login="l",
        password=SecretStr("p" * 8),
        connect_timeout=2,
    ) as client:
        outcome = await _create(client)
    assert isinstance(outcome, NotSent), outcome
    assert "ConnectError" in outcome.reason
    assert outcome.exchange.http_status is None
    assert outcome.exchange.response_body is None
    assert outcome.exchange.request["password"] == "***"


async def test_outcome_unknown_on_read_timeout_and_the_bill_was_created(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults({"commit_then_hang": {"times": 1}})
    async with make_client(sandbox, read_timeout=0.3) as client:
        outcome = await _create(client)
    assert isinstance(outcome, OutcomeUnknown), outcome
    assert "ReadTimeout" in outcome.reason
    assert outcome.exchange.http_status is None
    _assert_redacted(outcome)
    bills = await sandbox.records("bills")
    assert len(bills) == 1
    assert bills[0]["status"] == "CREATED"
    assert bills[0]["contract_masked"] == MASKED
    requests = await sandbox.records("requests")
    assert requests[-1]["outcome"] == "hang"
    assert "commit_then_hang" in requests[-1]["faults"]


async def test_outcome_unknown_on_5xx(sandbox: SandboxHandle, portmone_client: PortmoneClient) -> None:
    await sandbox.set_faults({"http_5xx": {"times": 1, "status": 502}})
    outcome = await _create(portmone_client)
    assert isinstance(outcome, OutcomeUnknown), outcome
    assert outcome.exchange.http_status == 502
    assert "HTTP 502" in outcome.reason
    assert outcome.exchange.response_body is not None
    # The fault was used up: the next call goes through.
    assert isinstance(await _create(portmone_client), AnsweredOk)


# ---- per fault kind ---------------------------------------------------------------------------


async def test_latency_fault_is_applied_and_recorded(
    sandbox: SandboxHandle, portmone_client: PortmoneClient
) -> None:
    await sandbox.set_faults({"latency_ms": 30})
    outcome = await _create(portmone_client)
    assert isinstance(outcome, AnsweredOk)
    requests = await sandbox.records("requests")
    assert requests[-1]["faults"] == ["latency_ms=30"]


async def test_fail_code_fault(sandbox: SandboxHandle, portmone_client: PortmoneClient) -> None:
    await sandbox.set_faults({"fail_codes": {"4": {"probability": 1.0, "times": 1}}})
    outcome = await _create(portmone_client)
    assert isinstance(outcome, AnsweredFail), outcome
    assert outcome.error.code == "4"
    assert outcome.error.kind is ErrorKind.TRANSIENT
    assert await sandbox.records("bills") == []
    assert isinstance(await _create(portmone_client), AnsweredOk)


async def test_wrong_password_is_a_configuration_failure(sandbox: SandboxHandle) -> None:
    async with make_client(sandbox, password=SecretStr("not-the-password")) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredFail), outcome
    assert outcome.error.code == "10"
    assert outcome.error.kind is ErrorKind.CONFIGURATION
    assert "not-the-password" not in json.dumps(await sandbox.records("requests"))
    assert "not-the-password" not in repr(outcome)


async def test_callback_is_delivered(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    async with make_client(sandbox) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredOk)
    [received] = await callback_receiver.wait_for(1)
    assert received.content_type.startswith("application/xml")
    rsp = parse_rsp(received.body, max_bytes=65536)
    assert rsp.ok
    assert rsp.bill is not None
    assert rsp.bill.bill_id == outcome.bill.bill_id
    assert rsp.bill.status is BillStatus.PAYED
    assert rsp.bill.contract_number == TEST_PHONE
    assert rsp.bill.amount_kopecks == 2500
    assert rsp.bill.comment == "receipt r-1"
    await sandbox.wait_idle()
    [delivery] = await sandbox.records("callbacks")
    assert delivery["delivered"] is True
    assert [a["http_status"] for a in delivery["attempts"]] == [200]
    assert (await sandbox.records("bills"))[0]["status"] == "PAYED"


async def test_rejected_callback(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_faults({"callback_status": "REJECTED", "callback_error_code": "4"})
    async with make_client(sandbox) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredOk)
    [received] = await callback_receiver.wait_for(1)
    rsp = parse_rsp(received.body, max_bytes=65536)
    assert rsp.ok is False
    assert rsp.error is not None
    assert rsp.error.code == "4"
    assert rsp.error.kind is ErrorKind.TRANSIENT
    assert rsp.error.description
    assert rsp.bill is not None
    assert rsp.bill.bill_id == outcome.bill.bill_id
    assert rsp.bill.status is BillStatus.REJECTED


async def test_callback_delivery_is_retried(
    sandbox: SandboxHandle, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.statuses = [500, 503]
    async with make_client(sandbox) as client:
        assert isinstance(await _create(client), AnsweredOk)
    await callback_receiver.wait_for(1)
    await sandbox.wait_idle()
    [delivery] = await sandbox.records("callbacks")
    assert [a["http_status"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["delivered"] is True


async def test_drop_callback(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_faults({"drop_callback": {"times": 1}})
    async with make_client(sandbox) as client:
        dropped = await _create(client)
        delivered = await _create(client)
    assert isinstance(dropped, AnsweredOk)
    assert isinstance(delivered, AnsweredOk)
    await callback_receiver.wait_for(1)
    await sandbox.wait_idle()
    bill_ids = [parse_rsp(r.body, max_bytes=65536).bill.bill_id for r in callback_receiver.received]  # type: ignore[union-attr]
    assert bill_ids == [delivered.bill.bill_id]
    records = {r["bill_id"]: r for r in await sandbox.records("callbacks")}
    assert records[dropped.bill.bill_id]["dropped"] is True
    assert records[dropped.bill.bill_id]["attempts"] == []


async def test_duplicate_callback(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_faults({"duplicate_callback": True})
    async with make_client(sandbox) as client:
        assert isinstance(await _create(client), AnsweredOk)
    first, second = await callback_receiver.wait_for(2)
    assert first.body == second.body
    await sandbox.wait_idle()
    assert [r["kind"] for r in await sandbox.records("callbacks")] == ["final", "duplicate"]


async def test_out_of_order_callback(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_faults({"out_of_order": True})
    async with make_client(sandbox) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredOk)
    received = await callback_receiver.wait_for(2)
    bills = [parse_rsp(r.body, max_bytes=65536).bill for r in received]
    assert [b.status for b in bills if b] == [BillStatus.PAYED, BillStatus.CREATED]
    assert {b.bill_id for b in bills if b} == {outcome.bill.bill_id}


async def test_callback_before_answer(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_faults({"callback_before_answer": {"times": 1}})
    async with make_client(sandbox) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredOk)
    # Already there when the answer arrives: no waiting.
    assert len(callback_receiver.received) == 1
    rsp = parse_rsp(callback_receiver.received[0].body, max_bytes=65536)
    assert rsp.bill is not None
    assert rsp.bill.bill_id == outcome.bill.bill_id


async def test_on_demand_callback(sandbox: SandboxHandle, callback_receiver: CallbackReceiver) -> None:
    await sandbox.set_faults({"drop_callback": True})
    async with make_client(sandbox) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredOk)
    resp = await sandbox.http.post(
        f"{sandbox.base_url}/_sandbox/bills/{outcome.bill.bill_id}/callback", json={"status": "RETURN"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["delivered"] is True
    [received] = callback_receiver.received
    rsp = parse_rsp(received.body, max_bytes=65536)
    assert rsp.bill is not None
    assert rsp.bill.status is BillStatus.RETURN
    missing = await sandbox.http.post(
        f"{sandbox.base_url}/_sandbox/bills/nope/callback", json={"status": "PAYED"}
    )
    assert missing.status_code == 404


# ---- secrets ----------------------------------------------------------------------------------


async def test_password_and_phone_never_leak(
    sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture, callback_receiver: CallbackReceiver
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(sandbox)
    assert PASSWORD not in repr(client)
    assert PASSWORD not in str(client)
    outcomes = [await _create(client)]
    await sandbox.set_faults({"http_5xx": {"times": 1}})
    outcomes.append(await _create(client))
    outcomes.append(await _create(client, payee_id="nope"))
    await client.aclose()
    await callback_receiver.wait_for(1)
    await sandbox.wait_idle()
    for outcome in outcomes:
        _assert_redacted(outcome)
        assert PASSWORD not in repr(outcome.exchange)
    assert "portmone" in caplog.text
    assert "AnsweredOk" in caplog.text
    assert PASSWORD not in caplog.text
    assert TEST_PHONE not in caplog.text
    for what in ("requests", "bills", "callbacks"):
        dumped = json.dumps(await sandbox.records(what), ensure_ascii=False)
        assert PASSWORD not in dumped
        assert TEST_PHONE not in dumped
    requests = await sandbox.records("requests")
    assert requests[0]["params"]["password"] == "***"
    assert requests[0]["params"]["contractNumber"] == MASKED


# ---- input validation -------------------------------------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport):
    """Answers with `respond(request)` or raises `exc`; counts the requests it saw."""

    def __init__(
        self,
        *,
        exc: Exception | None = None,
        respond: Callable[[httpx.Request], httpx.Response] | None = None,
    ) -> None:
        self.exc = exc
        self.respond = respond
        self.calls = 0
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.bodies.append(await request.aread())
        if self.exc is not None:
            raise self.exc
        assert self.respond is not None
        return self.respond(request)


def _client(transport: httpx.AsyncBaseTransport, **overrides: Any) -> PortmoneClient:
    values: dict[str, Any] = {
        "api_base": "http://portmone.test/api/directcash/",
        "login": "l",
        "password": SecretStr(PASSWORD),
        "transport": transport,
        "max_response_bytes": 4096,
    }
    values.update(overrides)
    return PortmoneClient(**values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contract_number": "0671234567"}, "contract_number"),
        ({"contract_number": "+380001234567"}, "contract_number"),
        ({"amount_kopecks": 0}, "greater than zero"),
        ({"amount_kopecks": -5}, "greater than zero"),
        ({"amount_kopecks": True}, "integer"),
        ({"amount_kopecks": 25.0}, "integer"),
        ({"currency": "USD"}, "currency"),
        ({"comment": "x" * 256}, "comment"),
        ({"payee_id": " "}, "payee_id"),
    ],
)
async def test_invalid_input_raises_and_sends_nothing(overrides: dict[str, Any], message: str) -> None:
    transport = CountingTransport(exc=AssertionError("must not be called"))
    async with _client(transport) as client:
        with pytest.raises(ValueError, match=message) as info:
            await _create(client, **overrides)
    assert TEST_PHONE not in str(info.value)
    assert transport.calls == 0


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="version"):
        PortmoneClient(login="l", password="p", version=3)
    with pytest.raises(ValueError, match="lang"):
        PortmoneClient(login="l", password="p", lang="de")
    with pytest.raises(ValueError, match="api_base"):
        PortmoneClient(api_base="ftp://x/", login="l", password="p")
    with pytest.raises(ValueError, match="password"):
        PortmoneClient(login="l", password=SecretStr(""))


async def test_closed_client_refuses() -> None:
    client = _client(CountingTransport(exc=AssertionError("unused")))
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await _create(client)


# ---- transport failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("broken pipe"),
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
    ],
)
async def test_errors_after_sending_are_outcome_unknown(exc: Exception) -> None:
    transport = CountingTransport(exc=exc)
    async with _client(transport) as client:
        outcome = await _create(client)
    assert isinstance(outcome, OutcomeUnknown), outcome
    assert type(exc).__name__ in outcome.reason
    assert transport.calls == 1
    # The form carried everything the profile asks for.
    form = transport.bodies[0].decode()
    for field in ("method=bills.create", "login=l", "version=2", "amount=25.00", "currency=UAH", "payeeId="):
        assert field in form


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("t"), httpx.PoolTimeout("t")]
)
async def test_errors_before_sending_are_not_sent(exc: Exception) -> None:
    async with _client(CountingTransport(exc=exc)) as client:
        outcome = await _create(client)
    assert isinstance(outcome, NotSent), outcome
    assert type(exc).__name__ in outcome.reason


async def test_connection_closed_after_request_is_outcome_unknown() -> None:
    """A real server that reads the whole request, then hangs up without a word."""
    seen: list[bytes] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        seen.append(await reader.readexactly(length))
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PortmoneClient(
            api_base=f"http://127.0.0.1:{port}/api/directcash/", login="l", password=SecretStr(PASSWORD)
        ) as client:
            outcome = await _create(client)
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(outcome, OutcomeUnknown), outcome
    assert "RemoteProtocolError" in outcome.reason or "ReadError" in outcome.reason
    assert len(seen) == 1
    assert b"method=bills.create" in seen[0]


def _respond(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(
        status, content=body, headers=headers or {"Content-Type": "text/xml"}
    )


OK_BODY = (
    b'<rsp status="ok"><bill><billId>9</billId><status>CREATED</status><amount>25.00</amount></bill></rsp>'
)
FAIL_BODY = (
    b'<rsp status="fail"><error code="2">busy</error><error_description>later</error_description></rsp>'
)


@pytest.mark.parametrize(
    ("status", "body", "expected", "detail"),
    [
        (404, b"<html>Not Found</html>", AnsweredFail, "http_404"),
        (403, b"", AnsweredFail, "http_403"),
        (301, b"", AnsweredFail, "http_301"),
        (200, b"<html>maintenance</html>", OutcomeUnknown, "unparseable"),
        (200, b'<rsp status="ok"/>', OutcomeUnknown, "without a bill"),
        (500, b"Internal Server Error", OutcomeUnknown, "HTTP 500"),
        (503, FAIL_BODY, AnsweredFail, "2"),
        (400, OK_BODY, OutcomeUnknown, "contradictory"),
        (200, b"x" * 5000, OutcomeUnknown, "over 4096 bytes"),
        (404, b"x" * 5000, AnsweredFail, "http_404"),
    ],
)
async def test_answers_are_classified(status: int, body: bytes, expected: type, detail: str) -> None:
    async with _client(CountingTransport(respond=_respond(status, body))) as client:
        outcome = await _create(client)
    assert isinstance(outcome, expected), outcome
    assert outcome.exchange.http_status == status
    if isinstance(outcome, AnsweredFail):
        assert outcome.error.code == detail
        if detail.startswith("http_"):
            assert outcome.error.kind is ErrorKind.CONFIGURATION
    else:
        assert isinstance(outcome, OutcomeUnknown)
        assert detail in outcome.reason


async def test_declared_oversize_is_refused_without_reading() -> None:
    respond = _respond(200, OK_BODY, {"Content-Type": "text/xml", "Content-Length": "999999"})

    def lying(request: httpx.Request) -> httpx.Response:
        response = respond(request)
        response.headers["Content-Length"] = "999999"
        return response

    async with _client(CountingTransport(respond=lying)) as client:
        outcome = await _create(client)
    assert isinstance(outcome, OutcomeUnknown)
    assert "over 4096 bytes" in outcome.reason


async def test_password_echoed_by_the_server_is_redacted_in_the_archive() -> None:
    body = (
        b'<rsp status="fail"><error code="10">bad</error><error_description>password '
        + PASSWORD.encode()
        + b" for 380001234567 refused</error_description></rsp>"
    )
    async with _client(CountingTransport(respond=_respond(200, body))) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredFail)
    assert outcome.exchange.response_body is not None
    assert PASSWORD not in outcome.exchange.response_body
    assert TEST_PHONE not in outcome.exchange.response_body


# ---- construction -----------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payouts-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_from_settings_builds_a_tls12_client_with_the_certificate(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    settings = PortmoneSettings(
        login="merchant",
        password=SecretStr("pw-123456"),
        cert_path=cert_path,
        key_path=key_path,
        version=2,
        lang="en",
    )
    async with PortmoneClient.from_settings(settings) as client:
        context = client.ssl_context
        assert context is not None
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert client.api_base.startswith("https://")
        assert "pw-123456" not in repr(client)
    with pytest.raises(ssl.SSLError):
        PortmoneClient(login="l", password="p", cert_path=key_path, key_path=key_path)


async def test_plain_http_base_has_no_tls_context(sandbox: SandboxHandle) -> None:
    async with make_client(sandbox) as client:
        assert client.ssl_context is None


# ---- the whole call is bounded: total_timeout = connect + write + read ------------------------


def test_total_timeout_is_connect_plus_write_plus_read() -> None:
    client = PortmoneClient(login="l", password="p", connect_timeout=1.5, write_timeout=2.0, read_timeout=4.0)
    assert client.total_timeout == 7.5
    defaults = PortmoneClient(login="l", password="p")
    assert defaults.total_timeout == 5.0 + 10.0 + 20.0
    settings = PortmoneSettings(
        login="l", password=SecretStr("p"), connect_timeout_seconds=3, write_timeout_seconds=4, read_timeout_seconds=6
    )
    assert settings.total_timeout_seconds == 13
    assert PortmoneClient.from_settings(settings).total_timeout == 13
    with pytest.raises(ValueError, match="timeouts must be positive"):
        PortmoneClient(login="l", password="p", write_timeout=0)


@dataclasses.dataclass
class Trickle:
    port: int
    answered: list[int]


@contextlib.asynccontextmanager
async def trickling_proxy(sandbox: SandboxHandle, *, trickle_headers: bool) -> AsyncIterator[Trickle]:
    """A tiny HTTP server in front of the real sandbox: it hands the request to the sandbox, then
    returns the sandbox's answer one byte every 0.2 s (from the first byte of the status line, or
    from the first byte of the body after sending the headers at once). No single read ever waits
    longer than 0.2 s, so a per-read timeout never fires."""
    answered: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length"))
            form = await reader.readexactly(length)
            upstream = await sandbox.http.post(
                sandbox.api_url, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            answered.append(upstream.status_code)
            body = upstream.content
            headers = (
                f"HTTP/1.1 {upstream.status_code} OK\r\nContent-Type: text/xml; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            if not trickle_headers:
                writer.write(headers)
                await writer.drain()
            for i in range(len(body) + (len(headers) if trickle_headers else 0)):
                data = (headers + body) if trickle_headers else body
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.2)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield Trickle(port=server.sockets[0].getsockname()[1], answered=answered)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_per_read_timeout_alone_does_not_stop_a_trickled_answer(sandbox: SandboxHandle) -> None:
    """The premise: httpx with a 0.5 s read timeout keeps reading a trickle for 4 times as long."""
    received = 0

    async def read_for_two_seconds(http: httpx.AsyncClient, port: int) -> None:
        nonlocal received
        async with asyncio.timeout(2.0), http.stream(
            "POST", f"http://127.0.0.1:{port}/api/directcash/", data=_form()
        ) as response:
            async for chunk in response.aiter_bytes():
                received += len(chunk)

    async with trickling_proxy(sandbox, trickle_headers=False) as proxy, httpx.AsyncClient(
        timeout=httpx.Timeout(0.5), trust_env=False
    ) as http:
        # Our own 2 s limit ends it, not httpx's read timeout (that would be httpx.ReadTimeout).
        with pytest.raises(TimeoutError):
            await read_for_two_seconds(http, proxy.port)
    assert received >= 5  # bytes kept coming


def _form() -> dict[str, str]:
    return {
        "method": "bills.create", "login": devdefaults.DEV_PORTMONE_LOGIN, "password": PASSWORD, "version": "2",
        "payeeId": PAYEE, "contractNumber": TEST_PHONE, "amount": "25.00", "currency": "UAH", "comment": "r-1",
    }


@pytest.mark.parametrize("trickle_headers", [False, True], ids=["body", "status-line"])
async def test_the_total_budget_stops_a_trickled_answer_as_outcome_unknown(
    sandbox: SandboxHandle, trickle_headers: bool
) -> None:
    async with trickling_proxy(sandbox, trickle_headers=trickle_headers) as proxy, PortmoneClient(
        api_base=f"http://127.0.0.1:{proxy.port}/api/directcash/",
        login=devdefaults.DEV_PORTMONE_LOGIN,
        password=SecretStr(PASSWORD),
        connect_timeout=0.5,
        write_timeout=0.5,
        read_timeout=0.5,
    ) as client:
        assert client.total_timeout == 1.5
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = await _create(client)
        took = loop.time() - started
    assert isinstance(outcome, OutcomeUnknown), outcome
    assert "total time budget of 1.5 s exceeded" in outcome.reason
    if trickle_headers:
        assert outcome.exchange.http_status is None
        assert "waiting for the answer" in outcome.reason
    else:
        assert outcome.exchange.http_status == 200
        assert "while reading the HTTP 200 answer" in outcome.reason
    assert outcome.exchange.response_body is None
    assert 1.5 <= took < 3.0
    assert 1500 <= outcome.exchange.elapsed_ms < 3000
    _assert_redacted(outcome)
    # Right to call it unknown: Portmone (the sandbox) did create the bill.
    assert proxy.answered == [200]
    [bill] = await sandbox.records("bills")
    assert bill["status"] == "CREATED"


async def test_the_budget_counts_the_wait_for_the_answer_too(sandbox: SandboxHandle) -> None:
    """The sandbox delays its answer (latency fault) by less than the read timeout, then the body
    trickles: the call ends at the total budget counted from the start (2 s), not from the first
    byte of the answer (1.4 + 2 s)."""
    await sandbox.set_faults({"latency_ms": 1400})
    async with trickling_proxy(sandbox, trickle_headers=False) as proxy, PortmoneClient(
        api_base=f"http://127.0.0.1:{proxy.port}/api/directcash/",
        login=devdefaults.DEV_PORTMONE_LOGIN,
        password=SecretStr(PASSWORD),
        connect_timeout=0.2,
        write_timeout=0.2,
        read_timeout=1.6,
    ) as client:
        outcome = await _create(client)
    assert isinstance(outcome, OutcomeUnknown), outcome
    assert "total time budget of 2 s exceeded while reading the HTTP 200 answer" in outcome.reason
    assert 2000 <= outcome.exchange.elapsed_ms < 2800
    requests = await sandbox.records("requests")
    assert requests[-1]["faults"] == ["latency_ms=1400"]


async def test_latency_within_the_budget_is_waited_for(sandbox: SandboxHandle) -> None:
    """A slow but timely answer is not cut short: the total budget exceeds the read timeout."""
    await sandbox.set_faults({"latency_ms": 700})
    async with make_client(sandbox, connect_timeout=0.5, write_timeout=0.5, read_timeout=1.0) as client:
        outcome = await _create(client)
    assert isinstance(outcome, AnsweredOk), outcome
    assert outcome.exchange.elapsed_ms >= 700


class StalledTransport(httpx.AsyncBaseTransport):
    """Reports progress the way httpx's own transport does (trace events), then stalls for good."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions.get("trace")
        for name in self.events:
            if trace is not None:
                await trace(name, {})
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("events", "expected", "detail"),
    [
        # Still connecting (TCP, TLS) when the budget ran out: nothing left this process.
        (["connection.connect_tcp.started"], NotSent, "before the request was sent"),
        (
            ["connection.connect_tcp.started", "connection.connect_tcp.complete", "connection.start_tls.started"],
            NotSent,
            "before the request was sent",
        ),
        # Headers on their way: it may have reached Portmone.
        (
            ["connection.connect_tcp.complete", "http11.send_request_headers.started"],
            OutcomeUnknown,
            "waiting for the answer",
        ),
        (["http11.send_request_headers.started", "http11.send_request_body.complete"], OutcomeUnknown, "waiting"),
        # A transport that reports nothing proves nothing: unknown.
        ([], OutcomeUnknown, "waiting for the answer"),
    ],
)
async def test_a_budget_overrun_is_not_sent_only_while_connecting(
    events: list[str], expected: type, detail: str
) -> None:
    async with _client(
        StalledTransport(events), connect_timeout=0.1, write_timeout=0.1, read_timeout=0.2
    ) as client:
        outcome = await _create(client)
    assert isinstance(outcome, expected), outcome
    assert isinstance(outcome, NotSent | OutcomeUnknown)
    assert "total time budget of 0.4 s exceeded" in outcome.reason
    assert detail in outcome.reason
    assert outcome.exchange.http_status is None
    assert outcome.exchange.request["password"] == "***"


# ---- validating apart from sending: bill_request(...) then send(request) ------------------------

# Today's messages, word for word: callers (the activity, the logs) rely on them.
PHONE_FORM = "contract_number must be a phone number in the form 380 followed by 9 digits"
INVALID_INPUTS = [
    ({"contract_number": "0671234567"}, PHONE_FORM),
    ({"contract_number": "+380001234567"}, PHONE_FORM),
    ({"contract_number": 380001234567}, PHONE_FORM),
    ({"amount_kopecks": 0}, "amount_kopecks must be greater than zero"),
    ({"amount_kopecks": -5}, "amount_kopecks must be greater than zero"),
    ({"amount_kopecks": True}, "amount_kopecks must be an integer number of kopecks"),
    ({"amount_kopecks": 25.0}, "amount_kopecks must be an integer number of kopecks"),
    ({"currency": "USD"}, "currency must be one of UAH"),
    ({"comment": "x" * 256}, "comment must be a string of at most 255 characters"),
    ({"comment": None}, "comment must be a string of at most 255 characters"),
    ({"payee_id": " "}, "payee_id must not be empty"),
    ({"payee_id": None}, "payee_id must not be empty"),
]


def _request_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "payee_id": PAYEE,
        "contract_number": TEST_PHONE,
        "amount_kopecks": 2500,
        "currency": "UAH",
        "comment": "receipt r-1",
    }
    values.update(overrides)
    return values


def test_bill_request_is_validated_immutable_and_masks_the_phone() -> None:
    request = PortmoneClient.bill_request(**_request_values())
    assert isinstance(request, BillRequest)
    assert request == BillRequest(**_request_values())
    assert request.method == "bills.create"
    assert request.params() == {
        "payeeId": PAYEE,
        "contractNumber": TEST_PHONE,
        "amount": "25.00",
        "currency": "UAH",
        "comment": "receipt r-1",
    }
    assert request.contract_masked == MASKED
    for text in (repr(request), str(request), f"{request}", repr([request])):
        assert TEST_PHONE not in text
        assert MASKED in text
        assert "2500" in text and "receipt r-1" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.contract_number = "380009999999"  # type: ignore[misc]
    with pytest.raises(TypeError):
        BillRequest(PAYEE, TEST_PHONE, 2500, "UAH", "c")  # type: ignore[misc]  # keywords only: no mix-ups


@pytest.mark.parametrize(("overrides", "message"), INVALID_INPUTS)
async def test_invalid_input_is_refused_by_bill_request_with_todays_messages(
    overrides: dict[str, Any], message: str
) -> None:
    exactly = f"^{re.escape(message)}$"
    with pytest.raises(ValueError, match=exactly) as built:
        PortmoneClient.bill_request(**_request_values(**overrides))
    assert TEST_PHONE not in str(built.value)
    # A BillRequest cannot be made around the check, and create_bill says the same, sending nothing.
    with pytest.raises(ValueError, match=exactly):
        BillRequest(**_request_values(**overrides))
    transport = CountingTransport(exc=AssertionError("must not be called"))
    async with _client(transport) as client:
        with pytest.raises(ValueError, match=exactly):
            await client.create_bill(**_request_values(**overrides))
    assert transport.calls == 0


async def test_send_a_prepared_request_to_the_sandbox(
    sandbox: SandboxHandle, portmone_client: PortmoneClient
) -> None:
    request = portmone_client.bill_request(**_request_values(comment="receipt r-send"))
    outcome = await portmone_client.send(request)
    assert isinstance(outcome, AnsweredOk), outcome
    assert outcome.bill.contract_number == TEST_PHONE
    assert outcome.bill.amount_kopecks == 2500
    assert outcome.bill.comment == "receipt r-send"
    assert outcome.exchange.request["amount"] == "25.00"
    _assert_redacted(outcome)
    [bill] = await sandbox.records("bills")
    assert bill["bill_id"] == outcome.bill.bill_id
    # The same request sent again is a second bill: sending is never idempotent.
    again = await portmone_client.send(request)
    assert isinstance(again, AnsweredOk)
    assert again.bill.bill_id != outcome.bill.bill_id


async def test_send_only_takes_a_bill_request_and_sends_nothing_else() -> None:
    transport = CountingTransport(exc=AssertionError("must not be called"))
    async with _client(transport) as client:
        with pytest.raises(TypeError, match="BillRequest"):
            await client.send(_request_values())  # type: ignore[arg-type]
    assert transport.calls == 0


async def test_send_never_raises_for_network_trouble() -> None:
    request = PortmoneClient.bill_request(**_request_values())
    async with _client(CountingTransport(exc=httpx.ReadError("reset"))) as client:
        assert isinstance(await client.send(request), OutcomeUnknown)
    async with _client(CountingTransport(exc=httpx.ConnectError("refused"))) as client:
        assert isinstance(await client.send(request), NotSent)
    closed = _client(CountingTransport(exc=AssertionError("unused")))
    await closed.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await closed.send(request)
