"""docs/configuration.md names every setting the code reads."""

from __future__ import annotations

from pathlib import Path

from runtime.settings import Settings, setting_sections

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def all_variables() -> set[str]:
    names = {f"PAYOUTS_{name.upper()}" for name in ("env", "data_dir")}
    for cls in setting_sections().values():
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field.upper()}" for field in cls.model_fields}
    assert "PAYOUTS_ENV" in names and "env" in Settings.model_fields
    return names


def test_configuration_doc_names_every_setting() -> None:
    text = DOC.read_text()
    missing = sorted(name for name in all_variables() if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md lacks: {missing}"
