"""The rabbit room's arrows: it imports the kernel (`payouts`) and itself, nothing else of ours; the
start path it shares with the webhook lives in the kernel, which imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {"console", "payouts", "portmone", "ledger", "workflows", "activities", "workers", "webhook", "sandbox",
         "rabbit"}


def imported_rooms(package: str) -> dict[str, set[str]]:
    """Each module of `package` -> the rooms of ours it imports."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rooms: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                rooms |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                rooms.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = rooms & ROOMS
    return out


def test_rabbit_imports_only_the_kernel() -> None:
    modules = imported_rooms("rabbit")
    assert "rabbit/consumer.py" in modules
    allowed = {"payouts", "rabbit"}
    wrong = {module: rooms - allowed for module, rooms in modules.items() if rooms - allowed}
    assert not wrong


def test_the_start_path_and_the_receipt_are_kernel_modules() -> None:
    modules = imported_rooms("payouts")
    for module in ("payouts/start.py", "payouts/receipt.py"):
        assert modules[module] <= {"payouts"}, modules[module]
    assert "workflows" not in imported_rooms("webhook")["webhook/intake.py"]
