"""Typed aiohttp application keys."""

from __future__ import annotations

from aiohttp import web

from webhook.deps import WebhookDeps

DEPS: web.AppKey[WebhookDeps] = web.AppKey("deps", WebhookDeps)
