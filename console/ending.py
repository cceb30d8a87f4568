"""Ending a `payouts` command that used a Temporal client.

The client's Rust threads can abort CPython's finalization ("PyGILState_Release … finalizing",
temporalio/sdk-python#300), which would turn a finished command into a crash (exit status 134). A
command that is the process itself ends with `os._exit` once its output is flushed.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def is_cli_process() -> bool:
    """True when this process is the `payouts` command itself (console script or `python -m console.cli`)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return Path(sys.argv[0]).name == "payouts" or getattr(spec, "name", None) == "console.cli"


def end(code: int) -> int:
    """End the process now with `code` when it is the `payouts` command; else (a test calling `main`) return it."""
    if not is_cli_process():
        return code
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
