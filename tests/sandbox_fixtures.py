"""Fixtures shared by tests/portmone and tests/sandbox: the REAL sandbox over HTTP on 127.0.0.1.

One sandbox server per test session (per importing conftest); every test gets it reset (records,
bills, faults, callback settings). `callback_receiver` runs a tiny aiohttp app on port 0, points the
sandbox's callbacks at it and records what arrives.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from portmone import PortmoneClient
from runtime import devdefaults
from sandbox.app import sandbox_state, start_sandbox
from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

# Operator code 00 does not exist in Ukraine: valid in form, nobody's phone.
TEST_PHONE = "380001234567"
WAIT_SECONDS = 10.0  # a safety net for awaited events, never a measured duration


@dataclass
class SandboxHandle:
    base_url: str
    app: web.Application
    http: httpx.AsyncClient

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/directcash/"

    @property
    def state(self) -> SandboxState:
        return sandbox_state(self.app)

    async def set_faults(self, spec: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        resp = await self.http.post(
            f"{self.base_url}/_sandbox/faults", params={"mode": "replace" if replace else "merge"}, json=spec
        )
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def records(self, what: str) -> list[dict[str, Any]]:
        resp = await self.http.get(f"{self.base_url}/_sandbox/{what}")
        assert resp.status_code == 200, resp.text
        items: list[dict[str, Any]] = resp.json()[what]
        return items

    async def set_callbacks(self, url: str | None, delay: float = 0.0) -> None:
        resp = await self.http.post(
            f"{self.base_url}/_sandbox/settings", json={"callback_url": url, "callback_delay_seconds": delay}
        )
        assert resp.status_code == 200, resp.text

    async def reset(self) -> None:
        resp = await self.http.post(f"{self.base_url}/_sandbox/reset")
        assert resp.status_code == 200, resp.text
        await self.set_callbacks(None)

    async def wait_idle(self) -> None:
        """Wait until every background task (callback deliveries) has finished."""
        async with asyncio.timeout(WAIT_SECONDS):
            while self.state.tasks:
                await asyncio.gather(*list(self.state.tasks), return_exceptions=True)


def sandbox_config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "seed": 1234,
        "callback_delay_seconds": 0.0,
        "callback_retry_seconds": 0.01,
        "callback_max_attempts": 3,
        "hang_seconds": 60.0,
    }
    values.update(overrides)
    return SandboxConfig(**values)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sandbox_server() -> AsyncIterator[SandboxHandle]:
    runner, port = await start_sandbox(sandbox_config(), "127.0.0.1", 0)
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=WAIT_SECONDS, trust_env=False) as http:
        yield SandboxHandle(base_url=base_url, app=runner.app, http=http)
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox(sandbox_server: SandboxHandle) -> SandboxHandle:
    await sandbox_server.reset()
    return sandbox_server


def make_client(sandbox: SandboxHandle, **overrides: Any) -> PortmoneClient:
    values: dict[str, Any] = {
        "api_base": sandbox.api_url,
        "login": devdefaults.DEV_PORTMONE_LOGIN,
        "password": SecretStr(devdefaults.DEV_PORTMONE_PASSWORD),
        "connect_timeout": 2.0,
        "read_timeout": WAIT_SECONDS,
    }
    values.update(overrides)
    return PortmoneClient(**values)


@pytest_asyncio.fixture(loop_scope="session")
async def portmone_client(sandbox: SandboxHandle) -> AsyncIterator[PortmoneClient]:
    client = make_client(sandbox)
    yield client
    await client.aclose()


@dataclass
class Received:
    content_type: str
    body: bytes


@dataclass
class CallbackReceiver:
    """Records every POST; answers with `statuses` in turn (then 200)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            async with self._changed:
                self.received.append(Received(request.headers.get("Content-Type", ""), body))
                self._changed.notify_all()
        return web.Response(status=status, text="ok")

    async def wait_for(self, count: int) -> list[Received]:
        async with asyncio.timeout(WAIT_SECONDS), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


@pytest_asyncio.fixture(loop_scope="session")
async def callback_receiver(sandbox: SandboxHandle) -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    app = web.Application()
    app.router.add_post("/portmone/callback", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/portmone/callback"
    await sandbox.set_callbacks(receiver.url)
    yield receiver
    await sandbox.reset()
    await runner.cleanup()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
