"""JSON error answers: what was wrong, never a stack trace."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def validation_error(exc: ValidationError) -> web.Response:
    fields = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in exc.errors()
    ]
    return error(422, "invalid request", fields=fields)
