"""The remote payload codec for the Temporal Web UI and CLI: `POST /codec/encode`, `POST /codec/decode`.

Protocol (Temporal's remote codec): the body is the JSON form of `temporal.api.common.v1.Payloads`,
`{"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}`, and so is the answer.

Authorization: `Authorization: Bearer <token>`, where the token is either the static
`WEBHOOK_CODEC_TOKEN` (the CLI's `--codec-auth`) or an operator's OIDC access token that the Web UI
passes on, verified against the issuer's keys (webhook.operator_tokens). Without either configured
the codec server is open in dev mode (the local Web UI has no identity provider) and closed (403) in
production. `X-Namespace`, which the UI sends, must name our namespace when present.

CORS: the origins in `WEBHOOK_CODEC_CORS_ORIGINS` (the Web UI's, e.g. http://127.0.0.1:8233) get
the CORS headers and an answer to the OPTIONS preflight; a request from any other browser origin
is refused. Requests without `Origin` (CLI, curl) are not browser requests and need only the token.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from runtime.codec import AesGcmCodec, CodecError
from runtime.settings import Settings
from runtime.temporal_client import payload_codec
from webhook.body import BodyRefused, read_body
from webhook.errors import error
from webhook.operator_tokens import KeysUnavailable, OperatorTokens
from webhook.refusal import Endpoint, Reason, Refused, refuse

ENCODE_PATH = "/codec/encode"
DECODE_PATH = "/codec/decode"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
ALLOWED_METHODS = "POST, OPTIONS"
PREFLIGHT_MAX_AGE = "600"
MAX_PAYLOADS = 10_000


class CodecServer:
    def __init__(self, settings: Settings, codec: AesGcmCodec) -> None:
        self._settings = settings
        self._codec = codec
        self._origins = frozenset(settings.webhook.cors_origins())
        self._token = settings.webhook.codec_token.get_secret_value()
        self._operators = OperatorTokens.from_settings(settings.webhook)
        self._max_bytes = settings.webhook.codec_max_body_bytes

    # ---- CORS ------------------------------------------------------------------------------

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or origin.rstrip("/") not in self._origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def _check_origin(self, request: web.Request, *, required: bool = False) -> None:
        """A browser's `Origin` must be allowed; a request without one (CLI, curl) passes unless `required`."""
        origin = request.headers.get("Origin")
        if (origin is None and required) or (origin is not None and origin.rstrip("/") not in self._origins):
            raise Refused(403, Reason.ORIGIN_NOT_ALLOWED, "origin not allowed")

    async def preflight(self, request: web.Request) -> web.Response:
        try:
            self._check_origin(request, required=True)
        except Refused as refused:
            return refuse(Endpoint.CODEC, refused)
        headers = {
            **self._cors_headers(request),
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        }
        return web.Response(status=204, headers=headers)

    # ---- authorization ---------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> None:
        """Pass, or raise Refused (KeysUnavailable when operators' tokens cannot be checked now)."""
        self._check_origin(request)
        if not self._token and self._operators is None:
            if self._settings.is_dev:
                return
            raise Refused(
                403, Reason.NOT_CONFIGURED,
                "codec server disabled: neither WEBHOOK_CODEC_TOKEN nor WEBHOOK_CODEC_OIDC_ISSUER is set",
            )
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if not given:
            raise Refused(401, Reason.CREDENTIALS_MISSING, "missing bearer token")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Refused(401, Reason.CREDENTIALS_MISSING, "send Authorization: Bearer <token>")
        if self._token and hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
            pass  # the static token (the CLI)
        elif self._operators is not None:
            await self._operators.check(credential.strip())
        else:
            raise Refused(401, Reason.TOKEN_MISMATCH, "wrong bearer token")
        namespace = request.headers.get("X-Namespace")
        if namespace is not None and namespace != self._settings.temporal.namespace:
            raise Refused(403, Reason.NAMESPACE_NOT_SERVED, "this codec server does not serve that namespace")

    # ---- handlers --------------------------------------------------------------------------

    async def encode(self, request: web.Request) -> web.Response:
        return await self._handle(request, self._codec.encode)

    async def decode(self, request: web.Request) -> web.Response:
        return await self._handle(request, self._codec.decode)

    async def _handle(
        self, request: web.Request, transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
    ) -> web.Response:
        cors = self._cors_headers(request)
        try:
            await self._authorize(request)
        except Refused as refused:
            return refuse(Endpoint.CODEC, refused, cors)
        except KeysUnavailable:
            answer = error(503, "operators' tokens cannot be verified now: the identity provider's keys do not answer")
            answer.headers.update(cors)
            return answer
        answer = await self._transform(request, transform)
        answer.headers.update(cors)
        return answer

    async def _transform(
        self, request: web.Request, transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
    ) -> web.Response:
        if request.content_type != "application/json":
            return error(415, "send the payloads as application/json")
        try:
            raw = await read_body(request, limit=self._max_bytes, timeout=self._settings.webhook.body_timeout_seconds)
        except BodyRefused as exc:
            return exc.response()
        try:
            body = json.loads(raw)
            payloads = json_format.ParseDict(body, Payloads()) if isinstance(body, dict) else None
        except (ValueError, RecursionError, json_format.ParseError):
            payloads = None
        if payloads is None:
            return error(400, 'body must be {"payloads": [{"metadata": {...}, "data": "<base64>"}]}')
        if len(payloads.payloads) > MAX_PAYLOADS:
            return error(413, f"more than {MAX_PAYLOADS} payloads")
        try:
            result = await transform(list(payloads.payloads))
        except CodecError as exc:
            return error(400, str(exc))
        return web.json_response(json_format.MessageToDict(Payloads(payloads=result)))


def setup_codec_server(app: web.Application, settings: Settings) -> CodecServer:
    server = CodecServer(settings, payload_codec(settings.crypto))
    for path, handler in ((ENCODE_PATH, server.encode), (DECODE_PATH, server.decode)):
        app.router.add_post(path, handler)
        app.router.add_route("OPTIONS", path, server.preflight)
    return server
