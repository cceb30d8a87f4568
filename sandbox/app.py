"""The sandbox application: Portmone simulator, fake Telegram, fake telecom, records and controls.

`build_app(config)` for embedding, `start_sandbox(config, host, port)` for tests and `payouts dev`
(port 0 picks a free port), `run_sandbox(config, host, port)` for `payouts sandbox` (blocks until
SIGINT/SIGTERM).
"""

from __future__ import annotations

import logging

from aiohttp import web

from sandbox import control, portmone_sim, telecom_fake, telegram_fake
from sandbox.config import SandboxConfig
from sandbox.state import STATE, SandboxState

logger = logging.getLogger("sandbox")

# Held requests (commit_then_hang) are released on shutdown; this only bounds the wait for the rest.
SHUTDOWN_TIMEOUT_SECONDS = 2.0


def build_app(config: SandboxConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes)
    state = SandboxState(config)
    app[STATE] = state
    portmone_sim.setup(app)
    telegram_fake.setup(app)
    telecom_fake.setup(app)
    control.setup(app)
    app.on_startup.append(state.on_startup)
    app.on_shutdown.append(state.on_shutdown)
    app.on_cleanup.append(state.on_cleanup)
    return app


def sandbox_state(app: web.Application) -> SandboxState:
    """The live state of a built app (tests read records and set faults through it)."""
    return app[STATE]


async def start_sandbox(
    config: SandboxConfig, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (call `await runner.cleanup()` to stop) and the real port."""
    runner = web.AppRunner(build_app(config), shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    actual_port = int(runner.addresses[0][1])
    seed = sandbox_state(runner.app).seed
    logger.info("sandbox listening on http://%s:%d (seed %d)", host, actual_port, seed)
    return runner, actual_port


def run_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8099) -> None:
    """Serve until SIGINT/SIGTERM (the `payouts sandbox` command); prints its seed and where it listens."""
    app = build_app(config)
    seed = sandbox_state(app).seed
    print(f"sandbox seed {seed} (replay this run with --seed {seed} or SANDBOX_SEED={seed})", flush=True)
    web.run_app(app, host=host, port=port, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
