"""The PortmoneDirect client: one shared httpx.AsyncClient, one call per method, no retries.

Retrying is Temporal's job. This client's job is to say precisely what happened to one request
(see `portmone.results`): answered ok, answered fail, not sent, or outcome unknown. Inputs are
validated before anything is sent, and apart from sending (`bill_request(...)` builds a validated
`BillRequest`, `send(request)` sends it); every outcome carries a redacted `Exchange` for the
archive; the log names the method, the outcome, the HTTP status and the time taken, never the
password or the phone (the redacted exchange itself at debug level). Every call is counted
(runtime.metrics: requests by method, failures by code, duration by outcome class, version-1
fallbacks).

Time: httpx's timeouts apply per operation (the read timeout to each read), so a server that
trickles its answer could hold one call for ever. The whole exchange (pool wait, connect, send,
wait, read the body) is therefore also bounded by `total_timeout` = connect + write + read
timeout. When that budget runs out before anything was sent the outcome is `NotSent`; once the
request may have been sent it is `OutcomeUnknown`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from pydantic import SecretStr

from portmone import protocol as p
from portmone.redact import REDACTED, redact_params, redact_xml
from portmone.request import BillRequest
from portmone.results import (
    AnsweredFail,
    AnsweredOk,
    Exchange,
    NotSent,
    Outcome,
    OutcomeUnknown,
    PortmoneError,
)
from portmone.xml import XmlRejected, parse_rsp
from runtime import metrics
from runtime.settings import PortmoneSettings

logger = logging.getLogger("portmone")

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_WRITE_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 20.0
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
_ARCHIVE_BODY_CHARS = 64 * 1024
_MIN_ECHO_SECRET = 4
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _BodyTooLarge(Exception):
    pass


class _Progress:
    """How far one exchange got, from httpcore's trace events (`connection.connect_tcp.started`,
    `http11.send_request_headers.started`, ...)."""

    def __init__(self) -> None:
        self.events = 0
        self.may_have_sent = False

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        self.events += 1
        # `connection.*` is the connect phase (TCP, TLS, connect retries, closing an idle
        # connection); anything else (`http11.send_request_headers`, ...) may have put bytes on the wire.
        if not name.startswith("connection."):
            self.may_have_sent = True

    def nothing_sent(self, transport_traces: bool) -> bool:
        """True only when the request certainly never left: the transport reports its progress
        (or did report some) and none of it was past the connect phase."""
        return not self.may_have_sent and (transport_traces or self.events > 0)


class PortmoneClient:
    """Async PortmoneDirect client. Use as `async with PortmoneClient(...) as client:` or call
    `aclose()` when done; one instance per process shares its connection pool."""

    def __init__(
        self,
        *,
        api_base: str = p.DEFAULT_API_BASE,
        login: str,
        password: SecretStr | str,
        version: int = p.PROTOCOL_VERSION,
        lang: str | None = None,
        cert_path: str | Path | None = None,
        key_path: str | Path | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        scheme = urlsplit(api_base).scheme.lower()
        if scheme not in ("http", "https") or not urlsplit(api_base).netloc:
            raise ValueError("api_base must be an http:// or https:// URL")
        if not login:
            raise ValueError("login must not be empty")
        secret = password if isinstance(password, SecretStr) else SecretStr(password)
        if not secret.get_secret_value():
            raise ValueError("password must not be empty")
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        if lang is not None and lang not in p.LANGUAGES:
            raise ValueError(f"lang must be one of {', '.join(p.LANGUAGES)} or None")
        if connect_timeout <= 0 or read_timeout <= 0 or write_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        if key_path is not None and cert_path is None:
            raise ValueError("key_path is set without cert_path")

        self._api_base = api_base
        self._login = login
        self._password = secret
        self._version = version
        self._lang = lang
        self._max_response_bytes = max_response_bytes
        self._ssl_context: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl_context = _ssl_context(cert_path, key_path)
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=write_timeout, pool=connect_timeout
        )
        self._total_timeout = connect_timeout + write_timeout + read_timeout
        # httpx's own transport reports its progress (trace events), so a deadline that strikes
        # before any of them said "sending" proves nothing was sent. A transport given from
        # outside may report nothing: then nothing is proved.
        self._transport_traces = transport is None or isinstance(transport, httpx.AsyncHTTPTransport)
        self._http = httpx.AsyncClient(
            timeout=timeout,
            verify=self._ssl_context if self._ssl_context is not None else True,
            transport=transport,
            follow_redirects=False,
            # Environment proxies are ignored: the path to Portmone (client certificate) is explicit.
            trust_env=False,
            headers={"Accept": "text/xml, application/xml"},
        )
        # A span per POST when tracing is on (docs/observability.md); the URL holds no secret and the
        # body (password, phone) is never recorded.
        HTTPXClientInstrumentor.instrument_client(self._http)
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: PortmoneSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Self:
        return cls(
            api_base=settings.api_base,
            login=settings.login,
            password=settings.password,
            version=settings.version,
            lang=settings.lang,
            cert_path=settings.cert_path,
            key_path=settings.key_path,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.read_timeout_seconds,
            write_timeout=settings.write_timeout_seconds,
            max_response_bytes=settings.max_response_bytes,
            transport=transport,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"PortmoneClient(api_base={self._api_base!r}, login={self._login!r}, "
            f"password={REDACTED!r}, version={self._version})"
        )

    __str__ = __repr__

    @property
    def api_base(self) -> str:
        return self._api_base

    @property
    def version(self) -> int:
        return self._version

    @property
    def total_timeout(self) -> float:
        """Seconds one call may take in all: connect + write + read timeout (see the module doc)."""
        return self._total_timeout

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context used for an https api_base (TLS 1.2+, client certificate loaded)."""
        return self._ssl_context

    # -- methods -----------------------------------------------------------------------------

    @staticmethod
    def bill_request(
        *, payee_id: str, contract_number: str, amount_kopecks: int, currency: str, comment: str
    ) -> BillRequest:
        """A validated `bills.create` request; raises ValueError for invalid input. Sends nothing."""
        return BillRequest(
            payee_id=payee_id,
            contract_number=contract_number,
            amount_kopecks=amount_kopecks,
            currency=currency,
            comment=comment,
        )

    async def send(self, request: BillRequest) -> Outcome:
        """Send a request built by `bill_request`: returns exactly one outcome and never raises for
        input, network or protocol trouble (only RuntimeError on a closed client)."""
        if not isinstance(request, BillRequest):
            raise TypeError(f"send() takes a BillRequest, not {type(request).__name__}")
        return await self._call(request.method, request.params())

    async def create_bill(
        self, *, payee_id: str, contract_number: str, amount_kopecks: int, currency: str, comment: str
    ) -> Outcome:
        """`bills.create`: `bill_request(...)` then `send(...)`. Raises ValueError (nothing sent) for
        invalid input; otherwise returns exactly one outcome."""
        request = self.bill_request(
            payee_id=payee_id,
            contract_number=contract_number,
            amount_kopecks=amount_kopecks,
            currency=currency,
            comment=comment,
        )
        return await self.send(request)

    # -- the one HTTP exchange ---------------------------------------------------------------

    def _params(self, method: str, extra: dict[str, str]) -> dict[str, str]:
        params = {
            p.P_METHOD: method,
            p.P_LOGIN: self._login,
            p.P_PASSWORD: self._password.get_secret_value(),
            p.P_VERSION: str(self._version),
        }
        if self._lang is not None:
            params[p.P_LANG] = self._lang
        params.update(extra)
        return params

    async def _call(self, method: str, extra: dict[str, str]) -> Outcome:
        if self._closed:
            raise RuntimeError("PortmoneClient is closed")
        params = self._params(method, extra)
        redacted = redact_params(params)
        metrics.record_portmone_request(method)
        started = time.monotonic()
        progress = _Progress()
        status: int | None = None
        body: bytes | None = None
        too_large = False
        deadline = asyncio.timeout(self._total_timeout)
        try:
            async with deadline, self._http.stream(
                "POST", self._api_base, data=params, extensions={"trace": progress.trace}
            ) as response:
                status = response.status_code
                try:
                    body = await self._read_capped(response)
                except _BodyTooLarge:
                    too_large = True
        except TimeoutError:
            if not deadline.expired():
                raise
            if body is None and not too_large:
                return self._finish(self._over_budget(method, redacted, status, progress, started))
            # The whole answer was already in hand (the deadline struck while closing): use it.
        except _NOT_SENT_ERRORS as exc:
            return self._finish(
                NotSent(reason=_reason(exc), exchange=self._exchange(method, redacted, None, None, started))
            )
        except httpx.HTTPError as exc:
            # Read/write timeouts, resets and protocol errors after the request started: it may
            # have reached Portmone.
            return self._finish(
                OutcomeUnknown(
                    reason=_reason(exc),
                    exchange=self._exchange(method, redacted, status, body, started),
                )
            )
        exchange = self._exchange(method, redacted, status, body, started)
        assert status is not None
        if too_large:
            reason = f"HTTP {status}: response over {self._max_response_bytes} bytes"
            if _is_client_error(status):
                return self._finish(_http_fail(status, reason, exchange))
            return self._finish(OutcomeUnknown(reason=reason, exchange=exchange))
        return self._finish(self._interpret(status, body or b"", exchange))

    def _over_budget(
        self, method: str, redacted: dict[str, str], status: int | None, progress: _Progress, started: float
    ) -> Outcome:
        exchange = self._exchange(method, redacted, status, None, started)
        budget = f"total time budget of {self._total_timeout:g} s exceeded"
        if status is None and progress.nothing_sent(self._transport_traces):
            return NotSent(reason=f"{budget} before the request was sent", exchange=exchange)
        where = f"while reading the HTTP {status} answer" if status is not None else "waiting for the answer"
        return OutcomeUnknown(reason=f"{budget} {where}", exchange=exchange)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self._max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _interpret(self, status: int, body: bytes, exchange: Exchange) -> Outcome:
        try:
            rsp = parse_rsp(body, max_bytes=self._max_response_bytes, requested_version=self._version)
        except XmlRejected as exc:
            if _is_client_error(status):
                return _http_fail(status, f"HTTP {status} without a Portmone answer ({exc})", exchange)
            return OutcomeUnknown(reason=f"HTTP {status}: unparseable answer: {exc}", exchange=exchange)
        if not rsp.ok:
            assert rsp.error is not None
            return AnsweredFail(error=rsp.error, bill=rsp.bill, exchange=exchange)
        if not 200 <= status < 300:
            reason = f"HTTP {status} with an 'ok' answer: contradictory"
            return OutcomeUnknown(reason=reason, exchange=exchange)
        if rsp.bill is None:
            return OutcomeUnknown(reason="'ok' answer without a bill", exchange=exchange)
        return AnsweredOk(bill=rsp.bill, exchange=exchange)

    def _exchange(
        self,
        method: str,
        redacted: dict[str, str],
        status: int | None,
        body: bytes | None,
        started: float,
    ) -> Exchange:
        text: str | None = None
        if body is not None:
            text = body[: _ARCHIVE_BODY_CHARS * 4].decode("utf-8", errors="replace")[:_ARCHIVE_BODY_CHARS]
            secret = self._password.get_secret_value()
            if len(secret) >= _MIN_ECHO_SECRET:
                # A server that echoes the password (in an error text, say) must not put it in the archive.
                text = text.replace(secret, REDACTED)
            text = redact_xml(text)
        return Exchange(
            method=method,
            request=redacted,
            http_status=status,
            response_body=text,
            elapsed_ms=int((time.monotonic() - started) * 1000),
        )

    def _finish(self, outcome: Outcome) -> Outcome:
        exchange = outcome.exchange
        detail = ""
        if isinstance(outcome, AnsweredFail):
            detail = f" code={outcome.error.code or '-'} kind={outcome.error.kind.value}"
            if outcome.error.fell_back_to_v1:
                detail += " fell_back_to_v1=true"
        elif isinstance(outcome, AnsweredOk):
            detail = f" bill_id={outcome.bill.bill_id} bill_status={outcome.bill.status.value}"
        elif isinstance(outcome, NotSent | OutcomeUnknown):
            detail = f" reason={outcome.reason!r}"
        outcome_class, fail_code = _classify(outcome)
        metrics.record_portmone_outcome(exchange.method, outcome_class, exchange.elapsed_ms / 1000, fail_code)
        if isinstance(outcome, AnsweredFail) and outcome.error.fell_back_to_v1:
            metrics.record_v1_fallback(exchange.method)
        # Both sides of the exchange, redacted (no password, phones masked): for debugging only.
        logger.debug("portmone %s request=%s response=%s", exchange.method, exchange.request, exchange.response_body)
        level = logging.INFO if isinstance(outcome, AnsweredOk) else logging.WARNING
        logger.log(
            level,
            "portmone %s -> %s http=%s elapsed_ms=%d%s",
            exchange.method,
            type(outcome).__name__,
            exchange.http_status if exchange.http_status is not None else "-",
            exchange.elapsed_ms,
            detail,
            # The bill id also as a field of the line (runtime.logs prints the payout's ids that way).
            extra={"bill_id": outcome.bill.bill_id} if isinstance(outcome, AnsweredOk) else None,
        )
        return outcome


_NOT_SENT, _UNKNOWN = "not_sent", "unknown"
# The series the alerts and dashboards read exist at 0 from the start: the calls we make, their
# version-1 answers, and every failure code we know (Portmone's catalogue, ours); a code outside
# them (an `http_<status>`, a code Portmone adds) appears with its first failure.
metrics.start_at_zero(metrics.PORTMONE_REQUESTS, metrics.every(method=[p.METHOD_BILLS_CREATE]))
metrics.start_at_zero(metrics.V1_FALLBACKS, metrics.every(source=[p.METHOD_BILLS_CREATE]))
metrics.start_at_zero(metrics.PORTMONE_FAILS, metrics.every(code=[*p.ERROR_CATALOGUE, _NOT_SENT, _UNKNOWN]))


def _classify(outcome: Outcome) -> tuple[str, str | None]:
    """The outcome class (a metric label) and, when the call did not answer ok, its failure code:
    Portmone's code or `http_<status>`, `not_sent`, `unknown`."""
    if isinstance(outcome, AnsweredOk):
        return "answered_ok", None
    if isinstance(outcome, AnsweredFail):
        return "answered_fail", outcome.error.code or "none"
    if isinstance(outcome, NotSent):
        return _NOT_SENT, _NOT_SENT
    return _UNKNOWN, _UNKNOWN


def _ssl_context(cert_path: str | Path | None, key_path: str | Path | None) -> ssl.SSLContext:
    context = httpx.create_ssl_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_path is not None:
        context.load_cert_chain(str(cert_path), str(key_path) if key_path is not None else None)
    return context


def _is_client_error(status: int) -> bool:
    """Statuses where the HTTP layer refused the request itself (3xx, 4xx): nothing was processed."""
    return 300 <= status < 500


def _http_fail(status: int, message: str, exchange: Exchange) -> AnsweredFail:
    return AnsweredFail(
        error=PortmoneError(
            code=f"http_{status}",
            message=message,
            description=None,
            kind=p.ErrorKind.CONFIGURATION,
            fell_back_to_v1=False,
        ),
        bill=None,
        exchange=exchange,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
