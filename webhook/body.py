"""Reading a request body whole, up to a cap and within a deadline, whatever chunks it arrives in.

Every route that takes a body (intake, Portmone callbacks, the codec server) reads it through
`read_body`: a body over the cap is refused with 413, and a body that has not fully arrived within
`WEBHOOK_BODY_TIMEOUT_SECONDS` (a client that promised 4 KiB and sent 40 bytes) with 408 and the
connection closed, so a slow or stalled client holds a connection for seconds, not minutes.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from webhook.errors import error

_CHUNK = 64 * 1024


class BodyRefused(Exception):
    """The body was not read: too large (413) or too slow (408)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        answer = error(self.status, self.message)
        if self.status == 408:
            answer.force_close()  # `Connection: close`: the rest of that body is not waited for
        return answer


async def read_body(request: web.Request, *, limit: int, timeout: float) -> bytes:
    """The whole body: at most `limit` bytes, all of it within `timeout` seconds, else BodyRefused."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyRefused(413, f"body over {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            raw = await read_capped(request, limit)
    except TimeoutError:
        raise BodyRefused(408, f"request body not received within {timeout:g} s") from None
    if raw is None:
        raise BodyRefused(413, f"body over {limit} bytes")
    return raw


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than `limit` (reading stops there)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
