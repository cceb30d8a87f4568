"""The docs name what the code has: every setting (docs/configuration.md) and every prefix (README),
every metric (docs/observability.md), and the rooms and arrows of the import-layer test
(docs/architecture.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime import metrics
from runtime.setting_names import all_variables, prefixes
from tests.test_import_layers import ALLOWED

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_configuration_doc_names_every_setting() -> None:
    names = {variable.name for variable in all_variables()}
    assert {"PAYOUTS_ENV", "PAYOUTS_DATA_DIR", "PAYOUTS_FERNET_KEYS", "TEMPORAL_ADDRESS", "LEDGER_URL"} <= names

    text = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md lacks: {missing}"


def test_the_readme_names_every_setting_prefix() -> None:
    text = (ROOT / "README.md").read_text()
    missing = [prefix for prefix in prefixes() if f"`{prefix}*`" not in text]
    assert not missing, f"README.md's Configuration lacks: {missing}"


def test_observability_doc_names_every_metric_the_code_exports() -> None:
    text = (DOCS / "observability.md").read_text()
    names = {name for name in metrics.EXPOSED if not re.search(r"_(bucket|count|sum)$", name)}
    assert "payout_queue_dead_letters_total" in names

    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"docs/observability.md lacks: {missing}"


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def arrows_table(text: str) -> dict[str, frozenset[str]]:
    """docs/architecture.md's "Arrows" table as room -> rooms it may import (parentheses are prose)."""
    table: dict[str, frozenset[str]] = {}
    for line in _section(text, "Arrows").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        rooms = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[0]))
        allowed = frozenset(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[1])))
        table.update(dict.fromkeys(rooms, allowed))
    return table


def test_the_architecture_arrows_are_the_import_layer_tests() -> None:
    assert arrows_table((DOCS / "architecture.md").read_text()) == ALLOWED


def test_the_arrows_reader_sees_a_wrong_row() -> None:
    text = "x\n## Arrows\n\n| room | may import |\n|---|---|\n| `rabbit` | `payouts` (not `ledger`) |\n"
    assert arrows_table(text) == {"rabbit": frozenset({"payouts"})}


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_the_architecture_rooms_table_has_a_row_for_every_room(room: str) -> None:
    assert f"\n| `{room}/` |" in _section((DOCS / "architecture.md").read_text(), "Rooms as built")
