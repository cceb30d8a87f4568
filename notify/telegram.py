"""A minimal Telegram Bot API client (sendMessage, editMessageText) on httpx."""

from __future__ import annotations

from typing import Any

import httpx


class TelegramError(RuntimeError):
    def __init__(
        self, message: str, *, retryable: bool, not_modified: bool = False, maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        # editMessageText with the text the message already has: the edit was made before
        self.not_modified = not_modified
        # The request may have reached Telegram and taken effect, with no answer back (a read timeout, a
        # connection dropped after sending); False when Telegram answered, or it was never reached.
        self.maybe_delivered = maybe_delivered


class TelegramClient:
    def __init__(self, api_base: str, token: str, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None):
        self._base = f"{api_base.rstrip('/')}/bot{token}"
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send_message(self, chat_id: int | str, text: str) -> int:
        result = await self._call("sendMessage", {"chat_id": chat_id, "text": text})
        return int(result["message_id"])

    async def edit_message_text(self, chat_id: int | str, message_id: int, text: str) -> int:
        result = await self._call("editMessageText", {"chat_id": chat_id, "message_id": message_id, "text": text})
        return int(result["message_id"])

    async def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self._http.post(f"{self._base}/{method}", json=payload)
        except httpx.HTTPError as exc:
            # The URL holds the bot token: report the error class only.
            unreached = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            message = f"{method}: {type(exc).__name__}"
            raise TelegramError(message, retryable=True, maybe_delivered=not unreached) from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200 and body.get("ok"):
            result = body.get("result")
            return result if isinstance(result, dict) else {}
        retryable = resp.status_code >= 500 or resp.status_code == 429
        description = str(body.get("description", ""))
        raise TelegramError(
            f"{method}: HTTP {resp.status_code} {description}",
            retryable=retryable,
            not_modified=resp.status_code == 400 and "message is not modified" in description,
        )
