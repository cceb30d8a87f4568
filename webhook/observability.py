"""What the webhook tells about each request: its metrics by route template, its log context, its
access-log line.

Each request runs in its own payout log context (runtime.log_context), which the handlers fill as
they learn the receipt, payout and bill. Its duration, method and status are recorded under the
route's template (`/portmone/callback`), never the raw path, so a scanner's random URLs become one
`unmatched` series. The access log names the path without its query string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from runtime import metrics
from runtime.log_context import payout_context

Handler = Callable[[web.Request], Awaitable[StreamResponse]]
UNMATCHED = "unmatched"
_MAX_PATH = 200


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe(request: web.Request, handler: Handler) -> StreamResponse:
    started = time.perf_counter()
    status = 500
    with payout_context():
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.record_http_request(route_template(request), request.method, status, time.perf_counter() - started)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path (no query string), status, time; the fields also as extras."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = request.path[:_MAX_PATH]
        self.logger.info(
            "%s %s %s %.1f ms",
            request.method,
            path,
            response.status,
            time * 1000,
            extra={
                "http_method": request.method,
                "http_path": path,
                "http_status": response.status,
                "duration_ms": round(time * 1000, 1),
                "remote": request.remote,
            },
        )


ACCESS_LOG = logging.getLogger("payouts.webhook.access")
