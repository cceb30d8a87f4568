"""sandbox room: a PortmoneDirect simulator, a fake Telegram Bot API and a fake telecom API, with
fault injection and a record of every call. Never imported by production code.

Start it with `start_sandbox(SandboxConfig(...))` (tests) or `run_sandbox(...)` (`payouts sandbox`).
"""

from sandbox.app import build_app, run_sandbox, sandbox_state, start_sandbox
from sandbox.config import SandboxConfig
from sandbox.faults import FaultError, FaultTable

__all__ = [
    "FaultError",
    "FaultTable",
    "SandboxConfig",
    "build_app",
    "run_sandbox",
    "sandbox_state",
    "start_sandbox",
]
