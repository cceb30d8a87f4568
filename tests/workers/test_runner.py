"""The worker's workflow runner shares the payout workflow's mechanics modules across payouts
(workers.registry.SHARED_WORKFLOW_MODULES). Outside the sandbox nothing checks their calls, so they
may import only what cannot make a payout's replay differ: the workflow API, the kernel and pure
standard-library helpers. (The tests run them sandboxed too: tests/workflows, tests/test_replay.py.)"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from workers.registry import SHARED_WORKFLOW_MODULES

# Modules a shared module may import: none reads a clock, a random source, the environment or I/O.
ALLOWED = {"__future__", "dataclasses", "collections.abc", "typing", "asyncio", "datetime"}
ALLOWED_ROOTS = ("temporalio", "payouts")
# From `datetime`, only the value types (`datetime.now()` would read the machine's clock).
ALLOWED_FROM_DATETIME = {"timedelta", "date", "datetime", "UTC"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "sleep", "random", "uuid4", "getenv"}


def _source(module: str) -> ast.Module:
    path = Path(importlib.import_module(module).__file__ or "")
    return ast.parse(path.read_text(), filename=str(path))


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module in ("datetime", "workflows"):
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # the names matter
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def refused(names: set[str]) -> set[str]:
    def ok(name: str) -> bool:
        if name.startswith("datetime."):
            return name.removeprefix("datetime.") in ALLOWED_FROM_DATETIME
        return name in ALLOWED or name.split(".")[0] in ALLOWED_ROOTS or name in SHARED_WORKFLOW_MODULES

    return {name for name in names if not ok(name)}


def clock_or_chance_calls(tree: ast.Module) -> set[str]:
    """`x.now()`, `time.time()`, `uuid.uuid4()` and the like; `workflow.now()` is the workflow's clock."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_CALLS:
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id in {"workflow", "asyncio"}):
                found.add(ast.unparse(node.func))
    return found


@pytest.mark.parametrize("module", SHARED_WORKFLOW_MODULES)
def test_a_shared_module_imports_and_calls_nothing_that_could_differ_on_replay(module: str) -> None:
    tree = _source(module)

    assert refused(imported(tree)) == set()
    assert clock_or_chance_calls(tree) == set()


def test_the_guard_refuses_what_it_is_there_to_refuse() -> None:
    lines = ["import random", "from os import environ", "from datetime import timedelta, datetime as dt",
             "import uuid", "from workflows import reconciliation", "x = dt.now()", "y = uuid.uuid4()",
             "z = workflow.now()", "w = asyncio.sleep(1)"]  # fmt: skip
    tree = ast.parse("\n".join(lines))

    assert refused(imported(tree)) == {"random", "os", "uuid", "workflows.reconciliation"}
    assert clock_or_chance_calls(tree) == {"dt.now", "uuid.uuid4"}


def test_every_shared_module_belongs_to_the_payout_workflow() -> None:
    """The list names real modules that the workflow's own module imports: a renamed module would
    otherwise go back into the per-payout sandbox unnoticed (still correct, only slower)."""
    assert set(SHARED_WORKFLOW_MODULES) <= imported(_source("workflows.receipt_payout"))
