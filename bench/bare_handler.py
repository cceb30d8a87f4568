"""The least a callback handler can do, as a process of its own: read the body and signal the workflow
named in the path (bench.webhook measures the webhook against it).

    .venv/bin/python -m bench.bare_handler --address HOST:PORT --port P
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from aiohttp import web
from temporalio.client import Client

from bench.baseline import SIGNAL


def bare_app(client: Client) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await client.get_workflow_handle(request.match_info["workflow_id"]).signal(SIGNAL)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/signal/{workflow_id}", handle)
    return app


def start_bare_handler(address: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """This module as a process of its own, its output in `log`."""
    command = [sys.executable, "-m", "bench.bare_handler", "--address", address, "--port", str(port)]
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def serve(address: str, port: int) -> None:
    runner = web.AppRunner(bare_app(await Client.connect(address)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.port))


if __name__ == "__main__":
    main()
