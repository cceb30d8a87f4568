"""A fake Telegram Bot API: sendMessage and editMessageText with the real response shapes.

`/telegram/bot{token}/{method}`; JSON, form or query parameters; a wrong token answers 401, a
missing chat_id or text 400, an unknown message 400, an unknown method 404, always as
`{"ok": false, "error_code": …, "description": …}`. The `telegram_fail` fault answers 5xx or 429.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from portmone.redact import mask_phones
from sandbox.state import STATE, SandboxState, now_iso

PREFIX = "/telegram"
_BOT = {"id": 7000000001, "is_bot": True, "first_name": "Sandbox", "username": "payouts_sandbox_bot"}
_MAX_TEXT = 4096


def _error(status: int, description: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description, **extra}
    return web.json_response(body, status=status)


async def _params(request: web.Request) -> dict[str, Any] | None:
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            data = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, Mapping):
            return None
        params.update(data)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _chat(chat_id: Any) -> dict[str, Any]:
    return {"id": chat_id, "type": "private", "first_name": "Sandbox user"}


def _chat_id(raw: Any) -> int | str | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


async def bot_method(request: web.Request) -> web.Response:
    state = request.app[STATE]
    method = request.match_info["method"]
    entry: dict[str, Any] = {"id": state.next_id(), "at": now_iso(), "method": method}
    state.telegram.append(entry)
    response = await _answer(request, state, method, entry)
    entry["http_status"] = response.status
    return response


async def _answer(
    request: web.Request, state: SandboxState, method: str, entry: dict[str, Any]
) -> web.Response:
    token = request.match_info["token"]
    if not hmac.compare_digest(token.encode(), state.config.telegram_token.encode()):
        return _error(401, "Unauthorized")
    fault = state.faults.roll("telegram_fail", state.telegram_rng)
    if fault is not None:
        status = fault.value or 500
        entry["fault"] = f"telegram_fail={status}"
        if status == 429:
            return _error(429, "Too Many Requests: retry after 1", parameters={"retry_after": 1})
        return _error(status, "Internal Server Error")
    params = await _params(request)
    if params is None:
        return _error(400, "Bad Request: can't parse JSON object")
    if method not in ("sendMessage", "editMessageText"):
        return _error(404, "Not Found")
    chat_id = _chat_id(params.get("chat_id"))
    entry["chat_id"] = chat_id
    if chat_id is None:
        return _error(400, "Bad Request: chat_id is empty")
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(400, "Bad Request: message text is empty")
    if len(text) > _MAX_TEXT:
        return _error(400, "Bad Request: message is too long")
    entry["text"] = mask_phones(text)
    chat_key = str(chat_id)
    now = int(time.time())
    if method == "sendMessage":
        message_id = state.telegram_next_id.get(chat_key, 0) + 1
        state.telegram_next_id[chat_key] = message_id
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": _BOT,
            "chat": _chat(chat_id),
            "date": now,
            "text": text,
        }
        state.telegram_messages[(chat_key, message_id)] = message
        entry["message_id"] = message_id
        return web.json_response({"ok": True, "result": message})
    try:
        message_id = int(params.get("message_id", ""))
    except (TypeError, ValueError):
        return _error(400, "Bad Request: message_id is empty")
    entry["message_id"] = message_id
    stored = state.telegram_messages.get((chat_key, message_id))
    if stored is None:
        return _error(400, "Bad Request: message to edit not found")
    if stored["text"] == text:
        return _error(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup are "
            "exactly the same as a current content and reply markup of the message",
        )
    stored["text"] = text
    stored["edit_date"] = now
    return web.json_response({"ok": True, "result": stored})


def setup(app: web.Application) -> None:
    app.router.add_route("POST", PREFIX + "/bot{token}/{method}", bot_method)
    app.router.add_route("GET", PREFIX + "/bot{token}/{method}", bot_method)
