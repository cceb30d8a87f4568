"""Reading a request body whole, up to a cap, whatever chunks it arrives in."""

from __future__ import annotations

from aiohttp import web

_CHUNK = 64 * 1024


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
