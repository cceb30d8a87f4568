"""docs/configuration.md names every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from runtime.setting_names import all_variables

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_doc_names_every_setting() -> None:
    names = {variable.name for variable in all_variables()}
    assert {"PAYOUTS_ENV", "PAYOUTS_DATA_DIR", "PAYOUTS_FERNET_KEYS", "TEMPORAL_ADDRESS", "LEDGER_URL"} <= names

    text = DOC.read_text()
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md lacks: {missing}"
