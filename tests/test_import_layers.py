"""The rooms' arrows point one way, down (docs/architecture.md): a test over the import graph.

Every `import` and `from … import` in a room's modules (at any depth: inside functions too) is read
with `ast`; an import of another room that the table below does not allow fails, naming the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# room -> the rooms it may import. `payouts` is the kernel: it imports none of ours; `runtime` (the
# plumbing every process shares) sits just above it.
ALLOWED: dict[str, frozenset[str]] = {
    "payouts": frozenset(),
    "runtime": frozenset({"payouts"}),
    "workflows": frozenset({"payouts"}),
    "portmone": frozenset({"runtime", "payouts"}),
    "ledger": frozenset({"payouts"}),
    "notify": frozenset({"ledger", "runtime", "payouts"}),
    "rabbit": frozenset({"runtime", "payouts"}),
    "activities": frozenset({"portmone", "ledger", "notify", "runtime", "payouts"}),
    "webhook": frozenset({"portmone", "ledger", "runtime", "payouts"}),
    "sandbox": frozenset({"portmone", "runtime", "payouts"}),
    "workers": frozenset({"workflows", "activities", "notify", "rabbit", "portmone", "ledger", "runtime", "payouts"}),
    "console": frozenset(
        {"workers", "webhook", "sandbox", "rabbit", "notify", "ledger", "portmone", "runtime", "payouts"}
    ),
}
ROOMS = frozenset(ALLOWED)


def _imported_rooms(path: Path) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.partition(".")[0], node.lineno) for name in names if name.partition(".")[0] in ROOMS}
    return found


def _violations(room: str) -> list[str]:
    problems = []
    for path in sorted((ROOT / room).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED[room] | {room}
        imported = _imported_rooms(path)
        problems += [f"{relative}:{line} imports {other}" for other, line in imported if other not in allowed]
    return problems


@pytest.mark.parametrize("room", sorted(room for room in ALLOWED if (ROOT / room).is_dir()))
def test_room_imports_only_rooms_below_it(room: str) -> None:
    assert _violations(room) == []


def test_every_room_is_in_the_table() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= ROOMS, f"rooms missing from the import table: {sorted(packages - ROOMS)}"


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from console.cli import main\n    import webhook.app\n")
    assert {room for room, _ in _imported_rooms(module)} == {"console", "webhook"}
